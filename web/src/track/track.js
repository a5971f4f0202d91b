// The customer's tracking page: its own small bundle (nothing of the dispatcher app). It reads
// the link's view and follows its live feed (server-sent events); all text goes in through
// textContent, and nothing but this link's own URLs is ever fetched.
const token = location.pathname.split("/")[2] || "";
const base = `/t/${encodeURIComponent(token)}`;
const $ = (id) => document.getElementById(id);

const STATES = {
  unassigned: "Received", assigned: "Scheduled", en_route: "On the way",
  arrived: "Arrived", completed: "Delivered", failed: "Could not be delivered",
  skipped: "Not visited", cancelled: "Cancelled",
};
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined,
  { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
const at = (ms) => timeFmt.format(new Date(ms));

function distanceM(a, b) {
  const r = Math.PI / 180, dLat = (b.lat - a.lat) * r, dLon = (b.lon - a.lon) * r;
  const h = Math.sin(dLat / 2) ** 2
    + Math.cos(a.lat * r) * Math.cos(b.lat * r) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.min(1, Math.sqrt(h)));
}

function render(v) {
  $("headline").textContent = v.heading_here ? "On the way to you" : (STATES[v.state] || v.state);
  $("stop-name").textContent = [v.stop.name, v.stop.address].filter(Boolean).join(", ");
  $("windows").textContent = v.stop.windows.length
    ? "Agreed time: " + v.stop.windows.map((w) => `${dayFmt.format(new Date(w.start_ms))}–${at(w.end_ms)}`).join(", ")
    : "";
  $("eta-box").hidden = !v.eta;
  if (v.eta) {
    $("eta").textContent = at(v.eta.eta_ms);
    $("eta-window").textContent = `(between ${at(v.eta.earliest_ms)} and ${at(v.eta.latest_ms)})`;
    $("late").hidden = !v.eta.late;
  }
  $("driver").hidden = !v.driver;
  $("driver-name").textContent = v.driver || "";
  const box = $("vehicle");
  box.hidden = !v.vehicle;
  if (v.vehicle) {
    box.dataset.lat = v.vehicle.lat;
    box.dataset.lon = v.vehicle.lon;
    const d = distanceM(v.stop, v.vehicle);
    // the stop in the middle, the vehicle in its direction on the outer ring (at least 1 km)
    const scale = 90 / Math.max(1000, d);
    const dx = (v.vehicle.lon - v.stop.lon) * 111320 * Math.cos(v.stop.lat * Math.PI / 180);
    const dy = (v.vehicle.lat - v.stop.lat) * 110540;
    $("dot").setAttribute("cx", (dx * scale).toFixed(1));
    $("dot").setAttribute("cy", (-dy * scale).toFixed(1));
    $("distance").textContent = d < 1000 ? `About ${Math.round(d / 50) * 50} m away`
      : `About ${(d / 1000).toFixed(1)} km away`;
  } else {
    delete box.dataset.lat;
    delete box.dataset.lon;
  }
  $("proof").hidden = !v.proof;
  if (v.proof) renderProof(v.proof);
  const ol = $("timeline");
  ol.replaceChildren(...v.timeline.map((t) => {
    const li = document.createElement("li");
    li.textContent = `${STATES[t.state] || t.state}, ${dayFmt.format(new Date(t.at_ms))}`;
    li.dataset.state = t.state;
    return li;
  }));
  $("expires").textContent = v.live_until_ms
    ? `This page works until ${dayFmt.format(new Date(v.live_until_ms))}.` : "";
  document.body.dataset.state = v.state;
  document.body.dataset.ready = "true";
}

function renderProof(p) {
  const dl = $("proof-facts");
  const facts = [["Received by", p.received_by || p.name], ["At", p.at_ms && dayFmt.format(new Date(p.at_ms))],
    ["Note", p.note]].filter(([, value]) => value);
  dl.replaceChildren(...facts.flatMap(([k, value]) => {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = String(value);
    return [dt, dd];
  }));
  const files = [p.signature, ...(p.photos || [])]
    .filter((id) => typeof id === "string" && /^f[0-9a-f]{40}$/.test(id));
  $("proof-photos").replaceChildren(...files.map((id) => {
    const img = document.createElement("img");
    img.src = `${base}/pod/${id}`;
    img.alt = id === p.signature ? "Signature" : "Photo taken at delivery";
    return img;
  }));
}

function gone() {
  $("gone").hidden = false;
  for (const id of ["eta-box", "vehicle", "driver"]) $(id).hidden = true;
  document.body.dataset.state = "gone";
  document.body.dataset.ready = "true";
}

async function start() {
  const resp = await fetch(`${base}/view`, { cache: "no-store" });
  if (resp.status === 410 || resp.status === 404) return gone();
  if (!resp.ok) throw new Error(`view: ${resp.status}`);
  render(await resp.json());
  const feed = new EventSource(`${base}/events`);
  feed.addEventListener("view", (e) => render(JSON.parse(e.data)));
  feed.addEventListener("gone", () => { feed.close(); gone(); });
}

start();
