// The vehicle panel: latest state (speed, heading, fix, CAN signals, link, backlog), its open
// alerts, its service history and form (service.js), and the command form for roles that may
// send commands.
import { get, post, query } from "./api.js";
import { classify } from "./fleet.js";
import { fmtAge, fmtNum, fmtTime, h, toast } from "./dom.js";
import { MessagesSection } from "./messages.js";
import { ServiceSection } from "./service.js";

const REFRESH_MS = 5000; // detail (CAN, link, backlog) comes from the REST API, not the hub
const ANSWER_POLL_MS = 500;
const ANSWER_WAIT_MS = 60000; // an agent behind a dead link answers when it reconnects

const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

export class VehiclePanel {
  constructor(root, fleet, { may, onClose, onFollow, onHistory, onShowAlert }) {
    this.root = root;
    this.fleet = fleet;
    this.may = may;
    this.onClose = onClose;
    this.onFollow = onFollow;
    this.onHistory = onHistory;
    this.onShowAlert = onShowAlert;
    this.id = null;
    this.timer = null;
    this.alerts = [];
    this.lastCommand = null;
  }

  async open(id) {
    this.id = id;
    this.root.hidden = false;
    this.lastCommand = null;
    this.builtFor = null;
    this.render();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    await this.refresh();
  }

  close() {
    this.id = null;
    this.root.hidden = true;
    clearInterval(this.timer);
    this.onClose();
  }

  async refresh() {
    const id = this.id;
    if (!id) return;
    try {
      const [item, alerts] = await Promise.all([
        get(`/api/vehicles/${encodeURIComponent(id)}`),
        get(`/api/alerts${query({ vehicle: id, state: "open", limit: 20 })}`).catch(() => ({ alerts: [] })),
      ]);
      if (id !== this.id) return;
      this.fleet.merge(item, Date.now());
      this.alerts = alerts.alerts || [];
      if (this.messages && this.builtFor === id) this.messages.refresh();
    } catch (err) {
      if (err.status === 404) toast(`${id}: no such vehicle`, "error");
    }
    this.render();
  }

  /** Called every second by the app so fix age and speed stay current. */
  tick() {
    if (this.id && !this.root.hidden) this.render();
  }

  /** The panel's fixed parts (title, buttons, command form) are built once per vehicle;
   * `render` only refills the values, so a click never lands on a replaced button. */
  build(id) {
    this.service = new ServiceSection(id, { mayRecord: this.may("dispatcher"),
                                            onRecorded: () => this.refresh() });
    this.messages = new MessagesSection(id, { mayWrite: this.may("dispatcher") });
    this.slots = { title: h("h2", {}, id), facts: h("dl", { class: "facts" }),
                   can: h("div"), alertsTitle: h("h3"), alerts: h("div") };
    this.root.replaceChildren(
      h("header", { class: "panel-head" }, this.slots.title,
        h("button", { class: "icon-btn", "aria-label": "Close vehicle panel", onclick: () => this.close() }, "✕")),
      h("div", { class: "panel-actions" },
        h("button", { id: "follow", onclick: () => this.onFollow(id) }, "Follow"),
        h("button", { id: "open-history", onclick: () => this.onHistory(id) }, "History")),
      this.slots.facts,
      h("h3", {}, "CAN signals"), this.slots.can,
      this.slots.alertsTitle, this.slots.alerts,
      this.service.root,
      this.messages.root,
      this.may("dispatcher") ? this.commandForm(id) : null);
    this.builtFor = id;
    this.service.refresh();
    this.messages.refresh();
  }

  render() {
    const v = this.fleet.vehicles.get(this.id);
    if (!v) return;
    if (this.builtFor !== v.id) this.build(v.id);
    const now = Date.now();
    const d = v.detail || {};
    const state = classify(v, now);
    const course = v.course;
    const rows = [
      ["State", h("span", { class: `state-chip ${state}` }, state)],
      ["Speed", fmtNum(v.speed, 1, "km/h")],
      ["Heading", course == null ? "—" : `${Math.round(course)}° ${COMPASS[Math.round(course / 45) % 8]}`],
      ["Last fix", `${fmtAge(v.timeMs == null ? null : (now - v.timeMs) / 1000)} ago`],
      ["Fix quality", fixQuality(d.fix)],
      ["Position", v.lat == null ? "—" : `${v.lat.toFixed(5)}, ${v.lon.toFixed(5)}`],
      ["Link", linkText(d.link)],
      ["Journal backlog", backlogText(d.status)],
    ];
    this.slots.facts.replaceChildren(...rows.flatMap(([k, val]) => [h("dt", {}, k), h("dd", {}, val)]));
    const can = Object.entries(d.can || {}).sort(([a], [b]) => a.localeCompare(b));
    this.slots.can.replaceChildren(can.length
      ? h("table", { class: "signals" }, h("tbody", {}, can.map(([name, sig]) => h("tr", {},
          h("th", { scope: "row" }, name),
          h("td", {}, fmtSignal(sig)),
          h("td", { class: "muted" }, sig.time_ms ? `${fmtAge((now - sig.time_ms) / 1000)} ago` : "")))))
      : h("p", { class: "muted" }, "no CAN signals"));
    this.slots.alertsTitle.textContent = `Open alerts (${this.alerts.length})`;
    this.slots.alerts.replaceChildren(this.alerts.length
      ? h("ul", { class: "mini-alerts" }, this.alerts.map((a) => h("li", {},
          h("button", { class: "link", onclick: () => this.onShowAlert(a) }, `${a.rule} · ${fmtTime(a.start_ms)}`))))
      : h("p", { class: "muted" }, "none"));
  }

  commandForm(id) {
    const name = h("input", { id: "command-name", list: "command-names", value: "ping", required: true,
      maxlength: 64, "aria-label": "Command name" });
    const args = h("input", { id: "command-args", value: "{}", "aria-label": "Command arguments (JSON)" });
    const answer = h("output", { id: "command-answer", class: "answer" }, this.lastCommand ?? "");
    const say = (text) => {
      this.lastCommand = text;
      const el = this.root.querySelector("#command-answer");
      if (el) el.textContent = text;
    };
    // only what this vehicle runs (its agent's advertised set, docs/protocol.md §3)
    const names = h("datalist", { id: "command-names" });
    get(`/api/vehicles/${encodeURIComponent(id)}/commands/offered`).then(({ commands }) => {
      names.replaceChildren(...commands.map((c) => h("option", { value: c.name }, c.description)));
    }).catch(() => {});
    const form = h("form", { class: "command", onsubmit: async (e) => {
      e.preventDefault();
      let parsed;
      try {
        parsed = JSON.parse(args.value || "{}");
      } catch {
        say("arguments must be a JSON object");
        return;
      }
      if (name.value.trim() === "dtc.clear") { // the dispatcher confirms clearing codes
        if (!window.confirm(`Clear the trouble codes of bus ${parsed.bus ?? "?"} on ${id}?`)) return;
        parsed = { ...parsed, confirm: true };
      }
      say("sending…");
      try {
        const { id: cid } = await post(`/api/vehicles/${encodeURIComponent(id)}/commands`,
          { name: name.value.trim(), args: parsed });
        say(`#${cid} pending`);
        say(await waitAnswer(cid, say));
      } catch (err) {
        say(`refused: ${err.message}`);
      }
    } },
      h("h3", {}, "Send a command"),
      names,
      h("div", { class: "row2" }, name, args, h("button", { type: "submit", id: "command-send" }, "Send")),
      answer);
    return form;
  }
}

async function waitAnswer(cid, progress) {
  const deadline = Date.now() + ANSWER_WAIT_MS;
  while (Date.now() < deadline) {
    const c = await get(`/api/commands/${cid}`);
    if (c.state === "answered" || c.ok != null) {
      const result = c.result ? ` ${JSON.stringify(c.result).slice(0, 400)}` : "";
      return `#${cid} ${c.ok ? "ok" : "failed"}: ${c.detail ?? ""}${result}`;
    }
    progress(`#${cid} ${c.state}${c.sent_count ? ` (sent ${c.sent_count}×)` : ""}`);
    await new Promise((r) => setTimeout(r, ANSWER_POLL_MS));
  }
  return `#${cid} no answer yet (the vehicle answers when it is back online)`;
}

// the fix kinds of docs/protocol.md §4 (the API's Vehicle.fix.fix)
const FIX_KINDS = { 1: "GPS", 2: "DGPS", 4: "RTK fixed", 5: "RTK float", 6: "dead reckoning" };
// DBC unit spellings shown the way people write them
const UNIT_TEXT = { degC: "°C", degF: "°F", deg: "°" };

function fixQuality(p) {
  if (!p) return "—";
  const parts = [];
  if (p.fix != null) parts.push(FIX_KINDS[p.fix] || `fix ${p.fix}`);
  if (p.sats != null) parts.push(`${p.sats} sats`);
  if (p.hdop != null) parts.push(`HDOP ${fmtNum(p.hdop, 1)}`);
  return parts.length ? parts.join(" · ") : "—";
}

function linkText(link) {
  if (!link) return "—";
  const parts = [link.connected ? "connected" : "disconnected"];
  if (link.since_ms) parts.push(`since ${fmtTime(link.since_ms)}`);
  if (link.address) parts.push(link.address);
  return parts.join(" · ");
}

function backlogText(status) {
  if (!status) return "not reported";
  const pending = status.pending ?? status.backlog ?? status.journal_pending;
  const parts = [];
  if (pending != null) parts.push(`${pending} readings pending`);
  if (status.dropped) parts.push(`${status.dropped} dropped`);
  if (status.time_ms) parts.push(`reported ${fmtAge((Date.now() - status.time_ms) / 1000)} ago`);
  return parts.length ? parts.join(" · ") : JSON.stringify(status);
}

function fmtSignal(s) {
  if (s == null) return "—";
  const value = typeof s.value === "number" ? (Number.isInteger(s.value) ? s.value : s.value.toFixed(2)) : String(s.value);
  return s.unit ? `${value} ${UNIT_TEXT[s.unit] || s.unit}` : value;
}

