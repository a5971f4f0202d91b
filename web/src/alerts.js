// Alerts: a live feed (hub topic `alerts` + GET /api/alerts), filters, acknowledge, optional
// sound; clicking one shows where and when on the map.
import * as maplibregl from "maplibre-gl";
import { get, post, query } from "./api.js";
import { fmtTime, h, toast } from "./dom.js";

const FEED_LIMIT = 200; // the feed shows the newest; older ones are a filter away in the API
const BEEP_HZ = 880;
const BEEP_S = 0.18;

export class Alerts {
  constructor(root, map, fleet, { may, onCount }) {
    this.root = root;
    this.map = map;
    this.fleet = fleet;
    this.may = may;
    this.onCount = onCount;
    this.alerts = new Map(); // id → alert
    // instant alerts (geofence enter/exit, DTCs) are closed as they open: show all by default
    this.filters = { state: "", rule: "", vehicle: "", unacked: false };
    this.sound = false;
    this.popup = null;
    const f = this.filters;
    this.rule = h("select", { id: "alert-rule", "aria-label": "Rule", onchange: (e) => { f.rule = e.target.value; this.render(); } },
      h("option", { value: "" }, "All rules"));
    this.ul = h("ul", { class: "alert-list", id: "alert-list", "aria-live": "polite" });
    root.append(
      h("div", { class: "toolbar" },
        h("select", { id: "alert-state", "aria-label": "State", onchange: (e) => { f.state = e.target.value; this.reload(); } },
          h("option", { value: "" }, "All"), h("option", { value: "open" }, "Open"), h("option", { value: "closed" }, "Closed")),
        this.rule,
        h("input", { type: "search", id: "alert-vehicle", placeholder: "Vehicle", "aria-label": "Vehicle",
          oninput: (e) => { f.vehicle = e.target.value.trim().toLowerCase(); this.render(); } })),
      h("div", { class: "toolbar" },
        h("label", { class: "inline" }, h("input", { type: "checkbox", id: "alert-unacked",
          onchange: (e) => { f.unacked = e.target.checked; this.render(); } }), " unacknowledged only"),
        h("label", { class: "inline" }, h("input", { type: "checkbox", id: "alert-sound",
          onchange: (e) => { this.sound = e.target.checked; if (this.sound) this.beep(); } }), " sound")),
      this.ul);
  }

  async reload() {
    try {
      const r = await get(`/api/alerts${query({ state: this.filters.state, limit: FEED_LIMIT })}`);
      this.alerts = new Map((r.alerts || []).map((a) => [a.id, a]));
    } catch (err) {
      if (err.status !== 404) toast(`Alerts: ${err.message}`, "error");
    }
    try {
      const rules = await get("/api/alert-rules");
      const names = (rules.rules || []).map((r) => r.name);
      this.rule.replaceChildren(h("option", { value: "" }, "All rules"), names.map((n) => h("option", { value: n }, n)));
    } catch {
      // rules are only a filter aid
    }
    this.render();
  }

  /** One alert from the hub: new, changed or closed. */
  push(alert) {
    const isNew = !this.alerts.has(alert.id);
    this.alerts.set(alert.id, { ...this.alerts.get(alert.id), ...alert });
    const v = this.fleet.vehicles.get(alert.vehicle);
    if (v) {
      v.openAlerts = [...this.alerts.values()].filter((a) => a.vehicle === alert.vehicle && a.state === "open").length;
      this.fleet.version++;
    }
    if (isNew && !alert.acknowledged_by) {
      if (this.sound) this.beep();
      toast(`Alert: ${alert.rule} · ${alert.vehicle}`, "alert");
    }
    this.render();
  }

  visible() {
    const f = this.filters;
    return [...this.alerts.values()]
      .filter((a) => (!f.state || a.state === f.state) && (!f.rule || a.rule === f.rule)
        && (!f.vehicle || String(a.vehicle).toLowerCase().includes(f.vehicle))
        && (!f.unacked || !a.acknowledged_by))
      .sort((a, b) => b.start_ms - a.start_ms)
      .slice(0, FEED_LIMIT);
  }

  render() {
    const unacked = [...this.alerts.values()].filter((a) => !a.acknowledged_by).length;
    this.onCount(unacked);
    const canAck = this.may("dispatcher");
    this.ul.replaceChildren(...this.visible().map((a) => h("li", {
      class: `alert ${a.state} ${a.acknowledged_by ? "acked" : ""}`, dataset: { alert: a.id, rule: a.rule, vehicle: a.vehicle } },
      h("button", { class: "row", onclick: () => this.show(a) },
        h("span", { class: "name" }, `${a.rule} · ${a.vehicle}`),
        h("span", { class: "meta" }, `${fmtTime(a.start_ms)}${a.end_ms ? ` – ${fmtTime(a.end_ms)}` : " · open"}`
          + `${a.peak != null ? ` · peak ${typeof a.peak === "number" ? a.peak.toFixed(1) : a.peak}` : ""}`),
        a.acknowledged_by ? h("span", { class: "meta" }, `acknowledged by ${a.acknowledged_by}`) : null),
      canAck && !a.acknowledged_by ? h("button", { class: "ack", onclick: () => this.ack(a) }, "Acknowledge") : null)));
  }

  async ack(a) {
    try {
      const updated = await post(`/api/alerts/${encodeURIComponent(a.id)}/ack`);
      this.alerts.set(a.id, { ...a, ...(updated.alert || updated) });
      this.render();
    } catch (err) {
      toast(`Not acknowledged: ${err.message}`, "error");
    }
  }

  show(a) {
    if (a.lat == null || a.lon == null) {
      toast(`${a.rule} · ${a.vehicle} at ${fmtTime(a.start_ms)} (no position)`);
      return;
    }
    this.popup?.remove();
    const body = h("div", { class: "popup" }, h("strong", {}, `${a.rule} · ${a.vehicle}`), h("br"),
      fmtTime(a.start_ms), a.end_ms ? ` – ${fmtTime(a.end_ms)}` : " (open)",
      a.detail ? h("div", { class: "muted" }, typeof a.detail === "string" ? a.detail : JSON.stringify(a.detail)) : null);
    this.popup = new maplibregl.Popup({ closeButton: true }).setLngLat([a.lon, a.lat]).setDOMContent(body).addTo(this.map);
    this.map.flyTo({ center: [a.lon, a.lat], zoom: Math.max(this.map.getZoom(), 15) });
  }

  beep() {
    try {
      this.audio ??= new AudioContext();
      const osc = this.audio.createOscillator();
      const gain = this.audio.createGain();
      gain.gain.value = 0.15;
      osc.frequency.value = BEEP_HZ;
      osc.connect(gain).connect(this.audio.destination);
      osc.start();
      osc.stop(this.audio.currentTime + BEEP_S);
    } catch {
      // no audio output: the toast still shows
    }
  }
}
