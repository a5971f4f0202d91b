// The Maintenance view (docs/maintenance.md, docs/driving.md): the fleet's due list, trouble
// codes, forecasts, driver scorecards and the fuel ranking as tables, and charts drawn by uPlot
// (a small canvas charting library; no eval, so it runs under the app's CSP): scores over
// weeks, a vehicle's fuel level with its refuels and drops marked, and a signal's history
// against its threshold. Every table has its CSV from the same API.
import uPlot from "uplot";
import { get, query } from "./api.js";
import { fmtNum, fmtTime, h } from "./dom.js";

const COLOURS = ["#3182ce", "#e53e3e", "#38a169", "#d69e2e", "#805ad5", "#dd6b20", "#319795", "#d53f8c"];
const CHART_W = 320; // the side panel's width
const CHART_H = 180;
const FUEL_SIGNAL = "FuelLevel1";
const DEFAULT_SIGNAL = "BatteryPotential_PowerInput1";

const csvLink = (path) => h("a", { class: "csv", href: `${path}${path.includes("?") ? "&" : "?"}format=csv`, download: "" }, "CSV");

function table(id, head, rows) {
  return h("table", { id, class: "maint-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c == null ? "–" : String(c)))))));
}

function section(title, path, body) {
  return h("section", { class: "maint" }, h("h3", {}, title, " ", path ? csvLink(path) : null), body);
}

/** A uPlot chart of series over time (seconds on x); `marks` are points-only series. */
function chart(id, title, x, series, opts = {}) {
  const div = h("div", { id, class: "chart", role: "img", "aria-label": title });
  const cfg = {
    title, width: CHART_W, height: CHART_H,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: s.colour || COLOURS[i % COLOURS.length], width: s.points ? 0 : 1.5,
      dash: s.dash, points: s.points ? { show: true, size: 9, fill: s.colour } : { show: false },
      spanGaps: !s.points,
    }))],
    legend: { show: true },
    ...opts,
  };
  div.plot = new uPlot(cfg, [x, ...series.map((s) => s.values)], div);
  div.dataset.series = String(series.length);
  return div;
}

export class Maintenance {
  constructor(root) {
    this.root = root;
    this.vehicle = h("select", { id: "maint-vehicle", "aria-label": "Vehicle", onchange: () => this.loadVehicle() });
    this.signal = h("input", { id: "maint-signal", value: DEFAULT_SIGNAL, "aria-label": "Signal", onchange: () => this.loadVehicle() });
    this.fleetBox = h("div", { id: "maint-fleet" }, h("p", { class: "muted" }, "loading…"));
    this.vehicleBox = h("div", { id: "maint-vehicle-box" });
    root.append(this.fleetBox,
      h("section", { class: "maint" }, h("h3", {}, "Vehicle"),
        h("div", { class: "toolbar" }, this.vehicle, this.signal)),
      this.vehicleBox);
    this.forecasts = [];
  }

  async load() {
    const [due, dtcs, fc, cards, fuel] = await Promise.all([
      get("/api/maintenance/due?state=all"), get("/api/maintenance/dtcs"),
      get("/api/maintenance/forecasts"), get("/api/driving/scorecards?by=vehicle"),
      get("/api/fuel/consumption")].map((p) => p.catch((err) => ({ error: err.message }))));
    this.forecasts = fc.forecasts || [];
    const parts = [];
    parts.push(section("Due list", "/api/maintenance/due?state=all", due.error ? h("p", {}, due.error) :
      table("maint-due", ["Vehicle", "Plan", "State", "Left", "Measured by"],
        due.due.map((d) => [d.vehicle, d.interval, d.state, d.remaining == null ? null : `${fmtNum(d.remaining, 0)} ${d.by === "engine_h" ? "h" : d.by}`, d.source_label]))));
    parts.push(section("Trouble codes", "/api/maintenance/dtcs", dtcs.error ? h("p", {}, dtcs.error) :
      table("maint-dtcs", ["Vehicle", "Code", "Status", "Last seen", "Recurred", "Per 1,000 km", "Also on"],
        dtcs.dtcs.map((c) => [c.vehicle, c.code, c.status, fmtTime(c.last_ms), c.recurrences, c.per_1000_km, c.other_vehicles.join(" ")]))));
    parts.push(section("Forecasts", "/api/maintenance/forecasts", h("ul", { id: "maint-forecasts" },
      this.forecasts.length ? this.forecasts.map((f) => h("li", {}, h("strong", {}, f.vehicle), ` ${f.text} `, h("span", { class: "muted" }, `(${f.method})`)))
        : h("li", { class: "muted" }, "nothing foreseen"))));
    const rows = cards.scorecards || [];
    parts.push(section("Scores over weeks", "/api/driving/scorecards?by=vehicle",
      h("div", {}, this.scoreChart(rows), table("maint-scores", ["Week", "Vehicle", "km", "Score", "Brakes", "Idle min"],
        rows.map((r) => [new Date(r.week_ms).toISOString().slice(0, 10), r.vehicle, fmtNum(r.km, 0), r.score, r.harsh_brake, r.idle_min])))));
    parts.push(section("Fuel ranking", "/api/fuel/consumption", fuel.error ? h("p", {}, fuel.error) :
      table("maint-fuel", ["#", "Vehicle", "L/100 km", "km", "Idle L", "Refuels", "Drops"],
        fuel.rows.map((r) => [r.rank, r.vehicle, r.l_per_100km, fmtNum(r.km, 0), r.idle_l, r.refuels, r.drops]))));
    this.fleetBox.replaceChildren(...parts);
    const vehicles = [...new Set([...(due.due || []).map((d) => d.vehicle), ...(fuel.rows || []).map((r) => r.vehicle)])].sort();
    const chosen = this.vehicle.value;
    this.vehicle.replaceChildren(...vehicles.map((v) => h("option", { value: v }, v)));
    if (vehicles.includes(chosen)) this.vehicle.value = chosen;
    await this.loadVehicle();
    this.root.dataset.loaded = "true";
  }

  scoreChart(rows) {
    const weeks = [...new Set(rows.map((r) => r.week_ms))].sort((a, b) => a - b);
    const vehicles = [...new Set(rows.map((r) => r.vehicle))].sort();
    if (!weeks.length) return h("p", { class: "muted" }, "no scores yet");
    const series = vehicles.map((v) => ({ label: v, values: weeks.map((w) => rows.find((r) => r.vehicle === v && r.week_ms === w)?.score ?? null) }));
    return chart("chart-scores", "Score per week", weeks.map((w) => w / 1000), series, { scales: { x: { time: true }, y: { range: [0, 100] } } });
  }

  async loadVehicle() {
    const v = this.vehicle.value;
    if (!v) return;
    const enc = encodeURIComponent(v);
    const signal = this.signal.value.trim() || DEFAULT_SIGNAL;
    const [services, level, events, sig] = await Promise.all([
      get(`/api/vehicles/${enc}/services${query({ limit: 10 })}`),
      get(`/api/vehicles/${enc}/signals/${FUEL_SIGNAL}`),
      get(`/api/fuel/events${query({ vehicle: v })}`),
      get(`/api/vehicles/${enc}/signals/${encodeURIComponent(signal)}`)].map((p) => p.catch((err) => ({ error: err.message }))));
    const parts = [];
    parts.push(section("Service history", null, services.error ? h("p", {}, services.error) : h("ul", { id: "maint-history" },
      services.services.length ? services.services.map((s) => h("li", {}, h("strong", {}, s.interval), ` · ${fmtTime(s.time_ms)}`, s.work ? ` · ${s.work}` : ""))
        : h("li", { class: "muted" }, "no service recorded"))));
    parts.push(section("Fuel level", `/api/fuel/events?vehicle=${enc}`, this.fuelChart(level, events)));
    parts.push(section(`${signal}`, null, this.signalChart(v, signal, sig)));
    this.vehicleBox.replaceChildren(...parts);
  }

  fuelChart(level, events) {
    if (level.error || !level.buckets?.length) return h("p", { class: "muted" }, level.error || "no fuel level");
    const x = level.buckets.map((b) => b.start_ms / 1000);
    const mean = level.buckets.map((b) => b.mean);
    const at = (kind) => {
      const marks = x.map(() => null);
      for (const e of events.events || []) {
        if (e.kind !== kind) continue;
        const i = Math.max(0, level.buckets.findIndex((b) => b.start_ms + level.bucket_ms > e.time_ms));
        marks[i] = mean[i];
      }
      return marks;
    };
    return chart("chart-fuel", "Fuel level %", x, [
      { label: "level", values: mean },
      { label: "refuel", values: at("refuel"), points: true, colour: "#38a169" },
      { label: "drop", values: at("drop"), points: true, colour: "#e53e3e" }]);
  }

  signalChart(vehicle, signal, sig) {
    if (sig.error || !sig.buckets?.length) return h("p", { class: "muted" }, sig.error || "no samples");
    const x = sig.buckets.map((b) => b.start_ms / 1000);
    const series = [
      { label: "mean", values: sig.buckets.map((b) => b.mean) },
      { label: "min", values: sig.buckets.map((b) => b.min), dash: [4, 4] },
      { label: "max", values: sig.buckets.map((b) => b.max), dash: [4, 4] }];
    const f = this.forecasts.find((x) => x.kind === "trend" && x.signal === signal && x.vehicle === vehicle)
      || this.forecasts.find((x) => x.kind === "trend" && x.signal === signal);
    if (f) series.push({ label: `threshold ${f.threshold}`, values: x.map(() => f.threshold), colour: "#e53e3e" });
    return chart("chart-signal", signal, x, series);
  }
}
