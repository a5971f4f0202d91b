// Where the login page may send the browser afterwards: only a path on this origin.

/**
 * The `next` parameter as a same-origin path ("/…"), or "/" for anything else: another origin
 * written as `//host`, `/\host` (browsers read a backslash as a slash), encoded or with
 * control characters in between, `javascript:` and other schemes, absolute URLs.
 */
export function safeNext(next, origin) {
  if (typeof next !== "string" || !next.startsWith("/")) return "/";
  // tabs and newlines are dropped by the URL parser, backslashes become slashes: refuse both
  if (/[\\\u0000-\u001f\u007f]/.test(next)) return "/";
  let url;
  try {
    url = new URL(next, origin);
  } catch {
    return "/";
  }
  if (url.origin !== origin || url.pathname.startsWith("//")) return "/";
  return url.pathname + url.search + url.hash;
}
