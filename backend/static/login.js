// fleet-agent login: POST /api/login (JSON), then the map; the session is an HttpOnly cookie.
"use strict";
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("error");
  error.textContent = "";
  const body = JSON.stringify({
    username: document.getElementById("username").value,
    password: document.getElementById("password").value,
  });
  try {
    const r = await fetch("/api/login", {
      method: "POST", headers: {"Content-Type": "application/json"}, body,
      credentials: "same-origin",
    });
    if (r.ok) {
      const answer = await r.json();
      sessionStorage.setItem("fleet.csrf", answer.csrf_token);
      location.assign("/");
      return;
    }
    const wait = r.headers.get("Retry-After");
    error.textContent = r.status === 429 ? `Too many failed attempts: try again in ${wait} s.`
      : r.status === 401 ? "Wrong user name or password." : `Login failed (${r.status}).`;
  } catch (e) {
    error.textContent = "The backend cannot be reached.";
  }
});
