// The vehicle list: search, state filter, sort, counts by state; rows open the vehicle panel.
// Redrawn at most every REDRAW_MS and only the first MAX_ROWS matches are in the DOM, so a
// fleet of 10,000 costs the same as one of 100.
import { classify, STATES } from "./fleet.js";
import { STATE_COLORS } from "./livemap.js";
import { fmtAge, fmtNum, h } from "./dom.js";

const REDRAW_MS = 1000;
const MAX_ROWS = 200;
// one collator for every comparison: localeCompare with options builds one per call
const byName = new Intl.Collator(undefined, { numeric: true }).compare;

/** Set `obj[key]` unless it already holds `value` (a DOM write dirties style and layout). */
function put(obj, key, value) {
  if (obj[key] !== value) obj[key] = value;
}

/** True when two sets hold the same ids. */
function sameSet(a, b) {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

export class VehicleList {
  constructor(root, countsRoot, fleet, { onSelect, onFilter }) {
    this.fleet = fleet;
    this.onSelect = onSelect;
    this.onFilter = onFilter;
    this.lastDraw = 0;
    this.filter = "";
    this.search = "";
    this.sort = "id";
    this.selected = null;
    this.search_ = h("input", { type: "search", id: "vehicle-search", placeholder: "Search vehicles",
      "aria-label": "Search vehicles", oninput: (e) => { this.search = e.target.value.trim().toLowerCase(); this.redraw(); } });
    this.filter_ = h("select", { id: "vehicle-filter", "aria-label": "Filter by state",
      onchange: (e) => { this.filter = e.target.value; this.redraw(); } },
      h("option", { value: "" }, "All states"), STATES.map((s) => h("option", { value: s }, s)));
    this.sort_ = h("select", { id: "vehicle-sort", "aria-label": "Sort by",
      onchange: (e) => { this.sort = e.target.value; this.redraw(); } },
      h("option", { value: "id" }, "Name"), h("option", { value: "state" }, "State"),
      h("option", { value: "speed" }, "Speed"), h("option", { value: "age" }, "Last fix"));
    this.ul = h("ul", { id: "vehicles", class: "vehicle-list" });
    this.rows = new Map(); // vehicle id → its <li>
    this.more = h("p", { class: "muted small" });
    root.append(h("div", { class: "toolbar" }, this.search_, this.filter_, this.sort_), this.ul, this.more);
    this.counts = countsRoot;
  }

  tick(now) {
    if (now - this.lastDraw >= REDRAW_MS) this.redraw(now);
  }

  redraw(now = Date.now()) {
    this.lastDraw = now;
    const counts = Object.fromEntries(STATES.map((st) => [st, 0]));
    const key = {
      id: (v) => v.id,
      state: (v, state) => STATES.indexOf(state),
      speed: (v) => -(v.speed ?? -1),
      age: (v) => -(v.timeMs ?? 0),
    }[this.sort];
    // one pass: each vehicle's state and sort key computed once (10,000 vehicles a second)
    const rows = [];
    const hidden = new Set();
    for (const v of this.fleet.vehicles.values()) {
      const state = classify(v, now);
      counts[state]++;
      const match = (!this.filter || state === this.filter) && (!this.search || v.id.toLowerCase().includes(this.search));
      if (match) rows.push({ v, state, k: key(v, state) });
      else hidden.add(v.id);
    }
    if (!this.countButtons) {
      this.countButtons = STATES.map((st) => h("button", {
        class: "count", dataset: { state: st }, title: `Show only ${st} vehicles`,
        onclick: () => { this.filter = this.filter === st ? "" : st; this.filter_.value = this.filter; this.redraw(); },
      }, h("i", { class: "dot", style: `background:${STATE_COLORS[st]}` }), `${st} `, h("b")));
      this.counts.replaceChildren(...this.countButtons);
    }
    this.countButtons.forEach((b, i) => {
      const st = STATES[i];
      b.classList.toggle("active", this.filter === st);
      b.setAttribute("aria-pressed", String(this.filter === st));
      b.querySelector("b").textContent = counts[st];
    });
    // the map re-sends its sources only when the filter's result changed, not every redraw
    if (!this.hidden || !sameSet(hidden, this.hidden)) this.onFilter(hidden);
    this.hidden = hidden;
    rows.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : byName(a.v.id, b.v.id)));
    // rows are kept per vehicle and updated in place: a click never lands on a replaced node
    const shown = rows.slice(0, MAX_ROWS);
    const keep = new Set(shown.map((r) => r.v.id));
    for (const [id, li] of this.rows) {
      if (!keep.has(id)) {
        li.remove();
        this.rows.delete(id);
      }
    }
    shown.forEach(({ v, state }, i) => {
      let li = this.rows.get(v.id);
      if (!li) {
        li = h("li", { dataset: { vehicle: v.id } },
          h("button", { class: "row", onclick: () => this.onSelect(v.id) },
            h("i", { class: "dot" }), h("span", { class: "name" }, v.id),
            h("span", { class: "alert-badge", title: "open alerts" }), h("span", { class: "meta" })));
        this.rows.set(v.id, li);
      }
      // written only when changed: a second's redraw of 200 rows mostly changes the fix age
      const { dot, badge, meta } = li.parts ?? (li.parts = {
        dot: li.querySelector(".dot"), badge: li.querySelector(".alert-badge"), meta: li.querySelector(".meta") });
      put(li, "className", v.id === this.selected ? "selected" : "");
      put(li.dataset, "state", state);
      if (li.parts.color !== STATE_COLORS[state]) dot.style.background = li.parts.color = STATE_COLORS[state];
      put(badge, "hidden", !(v.openAlerts > 0));
      put(badge, "textContent", v.openAlerts > 0 ? String(v.openAlerts) : "");
      put(meta, "textContent",
        `${state} · ${fmtNum(v.speed, 0, "km/h")} · ${fmtAge(v.timeMs == null ? null : (now - v.timeMs) / 1000)}`);
      if (this.ul.children[i] !== li) this.ul.insertBefore(li, this.ul.children[i] ?? null);
    });
    this.more.textContent = rows.length > MAX_ROWS ? `showing ${MAX_ROWS} of ${rows.length}: search to narrow` : "";
  }

  select(id) {
    this.selected = id;
    this.redraw();
  }
}

