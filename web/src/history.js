// History: a vehicle's route for a time range, coloured by speed; playback with a time slider
// and 1×–60× speed (device time, so real gaps between fixes are honoured); trips and stops;
// CSV and GPX export.
import { get, query } from "./api.js";
import { download, fmtAge, fmtNum, fmtTime, h, localInput, toast } from "./dom.js";
import { empty } from "./livemap.js";
import { Playback, Track } from "./track.js";

const DEFAULT_WINDOW_MS = 3600_000;
const MAX_POINTS = 20000; // the route API downsamples beyond this (enough for a day at 1 Hz/4)
const RATES = [1, 2, 5, 10, 30, 60];
// speed colour ramp, km/h: slow red through yellow to fast green
const SPEED_RAMP = [0, "#c53030", 20, "#dd6b20", 40, "#d69e2e", 60, "#38a169", 90, "#2c7a7b"];

export class History {
  constructor(root, map, fleet) {
    this.root = root;
    this.map = map;
    this.fleet = fleet;
    this.track = null;
    this.playback = null;
    this.follow = true;
    map.addSource("history-line", { type: "geojson", data: empty() });
    map.addSource("history-marker", { type: "geojson", data: empty() });
    map.addLayer({ id: "history-line", type: "line", source: "history-line",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-width": 4, "line-color": ["interpolate", ["linear"], ["get", "speed"], ...SPEED_RAMP] } },
    "clusters");
    map.addLayer({ id: "history-marker", type: "circle", source: "history-marker",
      paint: { "circle-radius": 8, "circle-color": "#6b46c1", "circle-stroke-color": "#fff", "circle-stroke-width": 3 } });
    this.vehicle = h("select", { id: "history-vehicle", "aria-label": "Vehicle" });
    const now = Date.now();
    this.from = h("input", { type: "datetime-local", id: "history-from", value: localInput(now - DEFAULT_WINDOW_MS), "aria-label": "From" });
    this.to = h("input", { type: "datetime-local", id: "history-to", value: localInput(now + 60_000), "aria-label": "To" });
    this.body = h("div", { class: "history-body" });
    root.append(
      h("form", { class: "stack", onsubmit: (e) => { e.preventDefault(); this.load(); } },
        h("label", {}, "Vehicle ", this.vehicle),
        h("div", { class: "row2" }, h("label", {}, "From ", this.from), h("label", {}, "To ", this.to)),
        h("div", { class: "row2" },
          h("button", { type: "button", onclick: () => this.quick(3600_000) }, "Last hour"),
          h("button", { type: "button", onclick: () => this.quick(86400_000) }, "Last day"),
          h("button", { type: "submit", id: "history-load" }, "Show route"))),
      this.body);
  }

  refreshVehicles(selected) {
    const ids = [...this.fleet.vehicles.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const keep = selected || this.vehicle.value;
    this.vehicle.replaceChildren(...ids.map((id) => h("option", { value: id, selected: id === keep }, id)));
  }

  quick(windowMs) {
    const now = Date.now();
    this.from.value = localInput(now - windowMs);
    this.to.value = localInput(now + 60_000);
    this.load();
  }

  async load() {
    const id = this.vehicle.value;
    const from = new Date(this.from.value).getTime();
    const to = new Date(this.to.value).getTime();
    if (!id || !(to > from)) {
      toast("Pick a vehicle and a range whose end is after its start", "error");
      return;
    }
    const q = query({ from_ms: from, to_ms: to });
    let feature, trips;
    try {
      [feature, trips] = await Promise.all([
        get(`/api/vehicles/${encodeURIComponent(id)}/route${query({ from_ms: from, to_ms: to, max_points: MAX_POINTS })}`),
        get(`/api/vehicles/${encodeURIComponent(id)}/trips${q}`).catch(() => null),
      ]);
    } catch (err) {
      toast(`History: ${err.message}`, "error");
      return;
    }
    this.clear();
    const track = new Track(feature);
    if (track.length < 2) {
      this.body.replaceChildren(h("p", { class: "muted", id: "history-empty" }, "No positions in this range."));
      return;
    }
    this.track = track;
    this.playback = new Playback(track.start, track.end);
    this.map.getSource("history-line").setData(track.segments());
    const lons = track.coords.map((c) => c[0]);
    const lats = track.coords.map((c) => c[1]);
    this.map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]],
      { padding: 60, maxZoom: 16, duration: 500 });
    this.render(id, trips, q);
    this.show(track.start);
  }

  render(id, trips, q) {
    const t = this.track;
    this.slider = h("input", { type: "range", id: "history-slider", min: t.start, max: t.end, step: 1000, value: t.start,
      "aria-label": "Playback time", oninput: (e) => { this.playback.seek(Number(e.target.value)); this.show(this.playback.t); } });
    this.playBtn = h("button", { id: "history-play", onclick: () => this.toggle() }, "▶ Play");
    this.clock = h("output", { id: "history-clock" }, fmtTime(t.start));
    this.rate = h("select", { id: "history-rate", "aria-label": "Playback speed",
      onchange: (e) => { this.playback.rate = Number(e.target.value); } },
      RATES.map((r) => h("option", { value: r }, `${r}×`)));
    const follow = h("input", { type: "checkbox", id: "history-follow", checked: this.follow,
      onchange: (e) => { this.follow = e.target.checked; } });
    const list = trips ? [
      ...(trips.trips || []).map((tr) => ({ kind: "trip", start: tr.start_ms, end: tr.end_ms,
        text: `Trip ${fmtTime(tr.start_ms)} · ${fmtNum(tr.distance_km, 1, "km")} · max ${fmtNum(tr.max_speed_kmh, 0, "km/h")}` })),
      ...(trips.stops || []).map((s) => ({ kind: "stop", start: s.start_ms, end: s.end_ms,
        text: `Stop ${fmtTime(s.start_ms)} · ${fmtAge(s.duration_s)}` })),
    ].sort((a, b) => a.start - b.start) : [];
    this.body.replaceChildren(
      h("p", { class: "muted", id: "history-summary" },
        `${t.length} points · ${fmtTime(t.start)} – ${fmtTime(t.end)}`),
      h("div", { class: "player" }, this.playBtn, this.rate,
        h("label", { class: "inline" }, follow, " follow")),
      this.slider, this.clock,
      h("div", { class: "legend" }, "speed ", ...legend()),
      h("div", { class: "row2" },
        h("button", { id: "export-csv", onclick: () => download(`${id}-route.csv`, "text/csv", t.toCsv()) }, "Route CSV"),
        h("button", { id: "export-gpx", onclick: () => download(`${id}-route.gpx`, "application/gpx+xml", t.toGpx()) }, "Route GPX"),
        h("a", { class: "button", href: `/api/vehicles/${encodeURIComponent(id)}/trips${q}&format=csv`, download: `${id}-trips.csv` }, "Trips CSV")),
      h("h3", {}, `Trips and stops (${list.length})`),
      h("ul", { class: "trips", id: "history-trips" }, list.map((it) => h("li", { class: it.kind },
        h("button", { class: "link", onclick: () => { this.playback.seek(it.start); this.show(it.start); } }, it.text)))),
    );
  }

  toggle() {
    if (!this.playback) return;
    if (this.playback.playing) this.playback.pause();
    else this.playback.play(performance.now());
    this.playBtn.textContent = this.playback.playing ? "❚❚ Pause" : "▶ Play";
  }

  /** Called every animation frame. */
  frame(wall) {
    if (!this.playback || !this.playback.playing) return;
    const t = this.playback.tick(wall);
    this.show(t);
    if (!this.playback.playing) this.playBtn.textContent = "▶ Play";
  }

  show(t) {
    const p = this.track.at(t);
    this.markerAt = [p.lon, p.lat];
    this.map.getSource("history-marker").setData({ type: "Feature", properties: {},
      geometry: { type: "Point", coordinates: [p.lon, p.lat] } });
    if (this.slider) this.slider.value = t;
    if (this.clock) this.clock.textContent = `${fmtTime(t)} · ${fmtNum(p.speed, 0, "km/h")}`;
    if (this.follow && this.playback?.playing) this.map.jumpTo({ center: [p.lon, p.lat] });
  }

  clear() {
    this.track = null;
    this.playback = null;
    this.map.getSource("history-line").setData(empty());
    this.map.getSource("history-marker").setData(empty());
    this.body.replaceChildren();
  }
}

function legend() {
  const out = [];
  for (let i = 0; i < SPEED_RAMP.length; i += 2) {
    out.push(h("span", { class: "swatch", style: `background:${SPEED_RAMP[i + 1]}` }), ` ${SPEED_RAMP[i]} `);
  }
  return out;
}
