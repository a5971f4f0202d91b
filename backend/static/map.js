// fleet-agent live map: a small Web-Mercator canvas map fed by the hub WebSocket.
// No tiles and no external library: positions, trails and a graticule on a plain background.
"use strict";

const TRAIL_POINTS = 300;          // per vehicle: a few minutes of track at 1-2 Hz
const HISTORY_MS = 10 * 60 * 1000; // track fetched from the REST route when a vehicle appears
const COLORS = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#4e342e"];

const canvas = document.getElementById("map");
const ctx = canvas.getContext("2d");
const vehicles = new Map();        // id -> {feature, trail: [[lon,lat]], color}
let view = null;                   // {cx, cy, scale}: mercator centre (0..1) and pixels per unit
let follow = null;
let fitPending = true;

function project(lon, lat) {      // Web Mercator to the unit square
  const s = Math.sin(Math.max(-85.05, Math.min(85.05, lat)) * Math.PI / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}
function unproject(x, y) {
  const lat = Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180 / Math.PI;
  return [x * 360 - 180, lat];
}
function toScreen([x, y]) {
  return [(x - view.cx) * view.scale + canvas.width / 2, (y - view.cy) * view.scale + canvas.height / 2];
}

function fit() {
  const pts = [];
  for (const v of vehicles.values()) for (const p of v.trail) pts.push(project(p[0], p[1]));
  if (!pts.length) return;
  let [x0, y0, x1, y1] = [1, 1, 0, 0];
  for (const [x, y] of pts) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const span = Math.max(x1 - x0, y1 - y0, 2e-6);   // at least a few hundred metres
  view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2,
           scale: 0.8 * Math.min(canvas.width, canvas.height) / span };
}

function resize() {
  const r = canvas.getBoundingClientRect();
  canvas.width = r.width * devicePixelRatio;
  canvas.height = r.height * devicePixelRatio;
  draw();
}

function graticule() {
  const [lonW, latN] = unproject(view.cx - canvas.width / 2 / view.scale, view.cy - canvas.height / 2 / view.scale);
  const [lonE, latS] = unproject(view.cx + canvas.width / 2 / view.scale, view.cy + canvas.height / 2 / view.scale);
  const span = lonE - lonW;
  const step = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001].find(s => span / s >= 4) || 0.001;
  ctx.strokeStyle = "#d5dde5"; ctx.fillStyle = "#8a99a8"; ctx.lineWidth = 1;
  ctx.font = `${11 * devicePixelRatio}px system-ui`;
  for (let lon = Math.ceil(lonW / step) * step; lon < lonE; lon += step) {
    const [x] = toScreen(project(lon, 0));
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, canvas.height); ctx.stroke();
    ctx.fillText(lon.toFixed(3), x + 3, canvas.height - 4);
  }
  for (let lat = Math.ceil(latS / step) * step; lat < latN; lat += step) {
    const [, y] = toScreen(project(0, lat));
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(canvas.width, y); ctx.stroke();
    ctx.fillText(lat.toFixed(3), 3, y - 3);
  }
}

function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!view) return;
  if (follow && vehicles.has(follow)) {
    const c = vehicles.get(follow).feature.geometry.coordinates;
    [view.cx, view.cy] = project(c[0], c[1]);
  }
  graticule();
  const dpr = devicePixelRatio;
  for (const [id, v] of vehicles) {
    ctx.strokeStyle = v.color; ctx.globalAlpha = 0.5; ctx.lineWidth = 3 * dpr;
    ctx.beginPath();
    v.trail.forEach((p, i) => { const [x, y] = toScreen(project(p[0], p[1])); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke(); ctx.globalAlpha = 1;
    const c = v.feature.geometry.coordinates;
    const [x, y] = toScreen(project(c[0], c[1]));
    const course = (v.feature.properties.course_deg || 0) * Math.PI / 180;
    ctx.save(); ctx.translate(x, y); ctx.rotate(course);
    ctx.fillStyle = v.color; ctx.strokeStyle = "#fff"; ctx.lineWidth = 2 * dpr;
    ctx.beginPath(); ctx.moveTo(0, -11 * dpr); ctx.lineTo(7 * dpr, 8 * dpr); ctx.lineTo(0, 4 * dpr); ctx.lineTo(-7 * dpr, 8 * dpr);
    ctx.closePath(); ctx.fill(); ctx.stroke(); ctx.restore();
    ctx.font = `bold ${12 * dpr}px system-ui`; ctx.fillStyle = "#1d2733";
    ctx.fillText(id, x + 10 * dpr, y - 8 * dpr);
  }
}

function renderList() {
  const ul = document.getElementById("vehicles");
  ul.replaceChildren();
  for (const [id, v] of [...vehicles].sort()) {
    const p = v.feature.properties;
    const li = document.createElement("li");
    li.dataset.vehicle = id;
    if (id === follow) li.className = "followed";
    const dot = document.createElement("span"); dot.className = "dot"; dot.style.background = v.color;
    const name = document.createElement("strong"); name.textContent = id;
    const meta = document.createElement("span"); meta.className = "meta";
    meta.textContent = `${p.speed_kmh == null ? "–" : p.speed_kmh.toFixed(0)} km/h · ${p.time.slice(11, 19)} UTC`;
    li.append(dot, name, meta);
    li.onclick = () => { follow = follow === id ? null : id; renderList(); draw(); };
    ul.append(li);
  }
  document.getElementById("count").textContent = `${vehicles.size} vehicle${vehicles.size === 1 ? "" : "s"}`;
}

function onFeature(f) {
  const id = f.properties.vehicle;
  let v = vehicles.get(id);
  if (!v) {
    v = { trail: [], color: COLORS[vehicles.size % COLORS.length] };
    vehicles.set(id, v); fitPending = true;
    loadHistory(id, v, Date.parse(f.properties.time));
  }
  v.feature = f;
  v.trail.push(f.geometry.coordinates);
  if (v.trail.length > TRAIL_POINTS) v.trail.shift();
  if (fitPending) { fit(); fitPending = false; }
  renderList(); draw();
}

async function loadHistory(id, v, untilMs) {
  try {
    const r = await fetch(`/api/vehicles/${encodeURIComponent(id)}/route?from_ms=${untilMs - HISTORY_MS}&to_ms=${untilMs}`);
    const route = await r.json();
    v.trail = route.geometry.coordinates.concat(v.trail).slice(-TRAIL_POINTS);
    draw();
  } catch (e) { /* live positions still arrive; the trail just starts later */ }
}

function connect(delay = 500) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  const conn = document.getElementById("conn");
  ws.onopen = () => {
    conn.textContent = "live"; conn.className = "conn up"; delay = 500;
    ws.send(JSON.stringify({ op: "subscribe", topic: "live_updates:all" }));
  };
  ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.feature) onFeature(m.feature); };
  ws.onclose = () => {
    conn.textContent = "reconnecting…"; conn.className = "conn down";
    // a WebSocket refused for want of a session says nothing: ask, and go log in
    fetch("/api/me").then((r) => { if (r.status === 401) location.assign("/login"); },
                          () => {});
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

let drag = null;
canvas.onmousedown = (e) => { drag = [e.clientX, e.clientY]; follow = null; canvas.style.cursor = "grabbing"; };
window.onmouseup = () => { drag = null; canvas.style.cursor = "grab"; };
window.onmousemove = (e) => {
  if (!drag || !view) return;
  view.cx -= (e.clientX - drag[0]) * devicePixelRatio / view.scale;
  view.cy -= (e.clientY - drag[1]) * devicePixelRatio / view.scale;
  drag = [e.clientX, e.clientY]; draw();
};
canvas.onwheel = (e) => { e.preventDefault(); if (view) { view.scale *= e.deltaY < 0 ? 1.25 : 0.8; draw(); } };
canvas.ondblclick = () => { follow = null; fit(); draw(); renderList(); };
window.onresize = resize;
resize();
connect();
