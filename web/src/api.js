// HTTP client for the backend's API (backend/openapi.yaml): session cookie + X-CSRF-Token on
// writes, JSON in and out, one error type carrying the status and the server's {"error"} text.

let csrfToken = null;

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body; // the answer's JSON (a CSV import's per-row `errors`)
  }
}

export function setCsrf(token) {
  csrfToken = token;
}

const WRITE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export async function api(method, path, body, { bodyType = "application/json" } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = bodyType;
  if (WRITE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const raw = body === undefined || bodyType !== "application/json";
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: raw ? body : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const type = res.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    const text = (data && data.error) || (typeof data === "string" && data) || res.statusText;
    throw new ApiError(res.status, text, typeof data === "object" ? data : null);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);
/** POST a file's text as it is (a CSV import): `type` its media type. */
export const postText = (path, text, type) => api("POST", path, text, { bodyType: type });

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
