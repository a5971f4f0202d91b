// The password page (/password): POST /api/me/password with the current one, then on to the
// app (or the page asked for). A login whose password is below the policy lands here first.
import { safeNext } from "./nexturl.js";

const form = document.getElementById("password");
const err = document.getElementById("password-error");
let csrf = null;

async function whoAmI() {
  const res = await fetch("/api/me", { credentials: "same-origin" });
  if (res.status === 401) {
    location.assign("/login?next=/password");
    return;
  }
  const me = await res.json();
  csrf = me.csrf_token;
  form.username.value = me.user.name;
  if (me.must_change_password) {
    document.getElementById("password-why").textContent =
      "Your password is below the current policy: choose a new one to continue.";
  }
}

function fail(text) {
  err.textContent = text;
  err.hidden = false;
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  err.hidden = true;
  if (form.new.value !== form.again.value) {
    fail("The new passwords differ.");
    return;
  }
  const res = await fetch("/api/me/password", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf || "" },
    body: JSON.stringify({ current_password: form.current.value, new_password: form.new.value }),
  });
  if (res.ok) {
    location.assign(safeNext(new URLSearchParams(location.search).get("next"), location.origin));
    return;
  }
  const body = await res.json().catch(() => ({}));
  fail(res.status === 429 ? "Too many attempts: try again later." : body.error || `Refused (${res.status}).`);
});

whoAmI();
