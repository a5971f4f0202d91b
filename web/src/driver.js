// The driver app (docs/driver.md): today's stops of the driver's shift, arrive / complete /
// fail with proof of delivery, messages with dispatch. Offline first: every action is put in
// the device's queue (driver/store.js) with its key and sequence number before it shows as
// saved, and is sent in order whenever there is a connection; the backend applies each
// exactly once. The route's changes arrive live (/api/driver/live) and show as a banner.

import { describe, routeChanges } from "./driver/diff.js";
import * as store from "./driver/store.js";

const $ = (id) => document.getElementById(id);
// the longest side of a photo as queued: what the backend keeps (backend/driver/images.py)
const PHOTO_SIDE = 1600;
// a failed send is tried again after this (and at once when the browser says it is online)
const RETRY_MS = 5000;
// the shift is read again this often even without a live change (a new route for the driver)
const REFRESH_MS = 60000;

let csrf = null;
let shift = null; // the last /api/driver/shift answer
let etas = new Map(); // job id → live ETA (ms)
let flushing = false;
const outcomes = new Map(); // job id → last conflict detail

function fmtTime(ms) {
  if (ms == null) return "–";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

async function call(method, path, body, type = "application/json") {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    if (!csrf) await loadMe();
    headers["X-CSRF-Token"] = csrf;
  }
  if (body !== undefined) headers["Content-Type"] = type;
  const res = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : type === "application/json" ? JSON.stringify(body) : body });
  if (res.status === 401) {
    location.assign("/login?next=/driver/");
    throw new Error("login needed");
  }
  const data = (res.headers.get("Content-Type") || "").includes("json") ? await res.json() : null;
  return { status: res.status, data };
}

async function loadMe() {
  const { status, data } = await call("GET", "/api/me");
  if (status === 200) {
    csrf = data.csrf_token;
    await store.setMeta("csrf", csrf);
    $("title").textContent = `Today's stops · ${data.user.name}`;
  }
}

// --- the route ------------------------------------------------------------------------------

// Every read of the shift compares it with the one shown: a driver's own actions change only
// states, so whatever diff.js finds (stops added, taken off, cancelled, re-ordered) is
// dispatch's doing, whichever read noticed it first.
async function loadShift() {
  let fresh;
  try {
    const { status, data } = await call("GET", "/api/driver/shift");
    if (status !== 200) return;
    fresh = data;
  } catch {
    return; // offline: keep what is shown
  }
  const before = shift;
  shift = fresh;
  await store.setMeta("shift", fresh);
  if (before) {
    const text = describe(routeChanges(before, fresh));
    if (text) showBanner(text);
  }
  await render();
}

function showBanner(text) {
  const b = $("banner");
  b.textContent = text;
  b.hidden = false;
}

function navLinks(stop) {
  const { lat, lon } = stop.place;
  const label = encodeURIComponent(stop.place.address || stop.name || stop.id);
  return [
    el("a", { class: "button", href: `geo:${lat},${lon}?q=${lat},${lon}(${label})` }, "Navigate"),
    el("a", { class: "button", href: `https://www.openstreetmap.org/directions?to=${lat}%2C${lon}`,
      target: "_blank", rel: "noopener" }, "Map"),
  ];
}

async function render() {
  const list = $("stops");
  list.replaceChildren();
  $("empty").hidden = !!(shift && shift.route);
  if (!shift || !shift.route) return;
  const pending = await store.queued();
  const local = new Map(); // job id → the state its queued actions lead to
  for (const item of pending) {
    const a = item.action;
    if (a.kind === "arrive") local.set(a.job_id, "arrived");
    if (a.kind === "complete") local.set(a.job_id, "completed");
    if (a.kind === "fail") local.set(a.job_id, "failed");
  }
  $("queue").textContent = pending.length ? `${pending.length} to send` : "all sent";
  shift.stops.forEach((s, i) => {
    const state = local.get(s.id) || s.state;
    const windows = (s.windows || []).map((w) => `${fmtTime(w.start_ms)}–${fmtTime(w.end_ms)}`).join(", ");
    const eta = etas.get(s.id) ?? s.planned_arrival_ms;
    const contact = s.contact || {};
    const li = el("li", { class: `stop ${state}${outcomes.has(s.id) ? " conflict" : ""}`,
      "data-testid": `stop-${s.id}`, "data-state": state },
      el("h3", {}, `${i + 1}. ${s.name || s.id}`),
      el("div", { class: "meta" }, s.place.address || `${s.place.lat}, ${s.place.lon}`),
      el("div", { class: "meta" }, `Window ${windows || "any time"} · ETA ${fmtTime(eta)}`),
      s.notes ? el("div", { class: "meta" }, `Notes: ${s.notes}`) : null,
      contact.name || contact.phone
        ? el("div", { class: "meta" }, `${contact.name || ""} `,
          contact.phone ? el("a", { href: `tel:${contact.phone}` }, contact.phone) : null)
        : null,
      el("div", { class: "state" }, state.replace("_", " ")),
      local.has(s.id) ? el("div", { class: "pending" }, "saved on this device, sending…") : null,
      outcomes.has(s.id) ? el("div", { class: "pending" }, `Not applied: ${outcomes.get(s.id)}`) : null,
    );
    const buttons = el("div", { class: "buttons" }, ...navLinks(s));
    const open = !["completed", "failed", "skipped", "cancelled"].includes(state);
    if (open && state !== "arrived") {
      buttons.append(el("button", { type: "button", "data-testid": `arrive-${s.id}`,
        onclick: () => act("arrive", s) }, "Arrived"));
    }
    if (open) {
      buttons.append(el("button", { type: "button", class: "primary",
        "data-testid": `complete-${s.id}`, onclick: () => openPod(s) }, "Complete"));
      buttons.append(el("button", { type: "button", "data-testid": `fail-${s.id}`,
        onclick: () => openFail(s) }, "Failed"));
    }
    li.append(buttons);
    list.append(li);
  });
}

// --- actions --------------------------------------------------------------------------------

async function act(kind, stop, extra = {}, files = []) {
  await store.enqueue({ kind, job_id: stop ? stop.id : null,
    route_id: stop ? shift.route.id : null, ...extra }, files);
  await render();
  flush();
}

async function scalePhoto(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
}

let podStop = null;
let signed = false;

function setupSignature() {
  const c = $("pod-signature");
  const g = c.getContext("2d");
  let drawing = false;
  const at = (e) => {
    const r = c.getBoundingClientRect();
    return [(e.clientX - r.left) * (c.width / r.width), (e.clientY - r.top) * (c.height / r.height)];
  };
  c.addEventListener("pointerdown", (e) => {
    drawing = true;
    c.setPointerCapture(e.pointerId);
    g.lineWidth = 3;
    g.lineCap = "round";
    g.beginPath();
    g.moveTo(...at(e));
  });
  c.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    g.lineTo(...at(e));
    g.stroke();
    signed = true;
  });
  c.addEventListener("pointerup", () => { drawing = false; });
  $("pod-clear").onclick = () => { g.clearRect(0, 0, c.width, c.height); signed = false; };
}

function openPod(stop) {
  podStop = stop;
  $("pod-title").textContent = `Proof of delivery · ${stop.name || stop.id}`;
  $("pod-form").reset();
  $("pod-signature").getContext("2d").clearRect(0, 0, 600, 200);
  signed = false;
  $("pod").showModal();
}

async function savePod() {
  const stop = podStop;
  const files = [];
  if (signed) {
    const blob = await new Promise((r) => $("pod-signature").toBlob(r, "image/png"));
    files.push({ kind: "signature", blob });
  }
  const photo = $("pod-photo").files[0];
  if (photo) files.push({ kind: "photo", blob: await scalePhoto(photo) });
  const pod = { recipient: $("pod-recipient").value, notes: $("pod-notes").value, photos: [] };
  $("pod").close();
  await act("complete", stop, { pod }, files);
}

let failStop = null;

function openFail(stop) {
  failStop = stop;
  $("fail-form").reset();
  $("fail").showModal();
}

// --- sending the queue ----------------------------------------------------------------------

async function upload(item) {
  // images first; their ids go into the action before it is sent (and are kept with it, so
  // a re-send carries the same body)
  const a = item.action;
  for (const [i, f] of item.files.entries()) {
    if (item.uploaded[i]) continue;
    const q = `kind=${f.kind}${a.job_id ? `&job=${encodeURIComponent(a.job_id)}` : ""}`;
    const { status, data } = await call("POST", `/api/driver/files?${q}`, f.blob, f.blob.type || "image/jpeg");
    if (status !== 200 && status !== 201) throw new Error(`upload: ${status}`);
    item.uploaded[i] = data.id;
    if (f.kind === "signature") a.pod.signature = data.id;
    else a.pod.photos.push(data.id);
    await store.update(item);
  }
}

async function flush() {
  if (flushing) return;
  flushing = true;
  try {
    for (;;) {
      const [item] = await store.queued();
      if (!item) break;
      await upload(item);
      const { status, data } = await call("POST", "/api/driver/actions", item.action);
      if (status === 200) {
        const a = data.action;
        if (a.outcome === "conflict" && a.job_id) outcomes.set(a.job_id, a.detail);
        if (a.outcome === "conflict") showConflict(a);
        await store.remove(item.action.device_seq);
      } else if (status === 409 && data && data.missing_files) {
        item.uploaded = {};
        item.action.pod.signature = null;
        item.action.pod.photos = [];
        await store.update(item);
      } else if (status === 409 || status === 400) {
        // refused for good (its key was reused): kept in sight, out of the way of the rest
        showConflict({ job_id: item.action.job_id, detail: data ? data.error : `${status}` });
        await store.setMeta(`refused-${item.action.key}`, item);
        await store.remove(item.action.device_seq);
      } else {
        throw new Error(`send: ${status}`);
      }
    }
    await loadShift();
    await loadMessages();
  } catch {
    setTimeout(flush, RETRY_MS); // offline or the backend away: nothing is lost, try again
  } finally {
    flushing = false;
    await render();
  }
}

function showConflict(a) {
  $("conflicts").hidden = false;
  $("conflict-list").append(el("li", {}, `${a.job_id || "message"}: ${a.detail}`));
}

// --- messages and live changes --------------------------------------------------------------

let lastMessage = 0;

async function loadMessages() {
  try {
    const { status, data } = await call("GET", `/api/driver/messages?after=${lastMessage}`);
    if (status === 200) data.messages.forEach(addMessage);
  } catch { /* offline */ }
}

function addMessage(m) {
  if (typeof m.seq !== "number" || m.seq <= lastMessage) return;
  lastMessage = m.seq;
  $("messages").append(el("li", { class: m.direction },
    `${fmtTime(m.sent_ms)} ${m.direction === "to_driver" ? m.author : "me"}: ${m.text}`));
}

let reloadTimer = null;

function connectLive() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/driver/live`);
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.message) addMessage(m.message);
    if (m.eta) {
      for (const s of m.eta.stops) etas.set(s.job_id, s.eta_ms);
      render();
    }
    if (m.route || m.job || m.transition) {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(() => loadShift(), 200);
    }
  };
  ws.onclose = () => setTimeout(connectLive, RETRY_MS);
}

function showNet() {
  $("net").textContent = navigator.onLine ? "online" : "offline";
  $("net").classList.toggle("offline", !navigator.onLine);
}

async function main() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/driver/sw.js", { scope: "/driver/" }).catch(() => {});
    // the app and its route are cached once the worker is active (tests wait for this)
    navigator.serviceWorker.ready.then(() => { document.body.dataset.offlineReady = "true"; });
  }
  csrf = (await store.getMeta("csrf")) || null;
  shift = (await store.getMeta("shift")) || null;
  await render();
  setupSignature();
  $("pod-cancel").onclick = () => $("pod").close();
  $("pod-form").onsubmit = (e) => { e.preventDefault(); savePod(); };
  $("fail-cancel").onclick = () => $("fail").close();
  $("fail-form").onsubmit = (e) => {
    e.preventDefault();
    const reason = $("fail-reason").value || $("fail-other").value || "other";
    $("fail").close();
    act("fail", failStop, { reason });
  };
  $("message-form").onsubmit = (e) => {
    e.preventDefault();
    const text = $("message-text").value.trim();
    if (!text) return;
    $("message-text").value = "";
    act("message", null, { text });
  };
  $("logout").onclick = async () => {
    await call("POST", "/api/logout");
    location.assign("/login");
  };
  window.addEventListener("online", () => { showNet(); flush(); });
  window.addEventListener("offline", showNet);
  showNet();
  try { await loadMe(); } catch { /* offline: the cached token and shift */ }
  await loadShift();
  await loadMessages();
  document.body.dataset.ready = "true";
  connectLive();
  flush();
  setInterval(() => loadShift(), REFRESH_MS);
}

main();
