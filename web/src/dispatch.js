// Dispatch (docs/dispatch.md): the jobs table (filter by state, import a CSV file), Plan (a
// proposal from the planner with its diff, approved by the dispatcher), and the routes on the
// map, one colour per vehicle with numbered stops, live ETAs per stop against its window, a
// job moved to another route in one action (re-sequenced by the solver), and the proposals
// re-planning makes on events (a failed stop, a vehicle offline …) waiting for approval.
// Changes on the hub's `dispatch` topic reload it (debounced); ETAs update in place.
import { ApiError, del, get, post, postText } from "./api.js";
import { fmtTime, h, localInput, toast } from "./dom.js";

const STATES = ["unassigned", "assigned", "en_route", "arrived", "completed", "failed", "skipped", "cancelled"];
// one colour per vehicle, in the order of its routes (distinct on the light basemap)
const COLOURS = ["#e53e3e", "#3182ce", "#38a169", "#d69e2e", "#805ad5", "#dd6b20", "#319795", "#d53f8c", "#2b6cb0", "#718096"];
const JOBS_PAGE = 5000; // the API's largest page: one request for a day's jobs
const RELOAD_AFTER_MS = 300; // a plan's approval sends a burst of changes: one reload for all
const EMPTY = { type: "FeatureCollection", features: [] };

/** The default shift: today 08:00–18:00 local time. */
function todayShift() {
  const d = new Date();
  d.setHours(8, 0, 0, 0);
  return [d.getTime(), d.getTime() + 10 * 3600_000];
}

/** GeoJSON of routes (one LineString each) and their numbered stops, from jobs' places. */
export function routeFeatures(routes, jobsById) {
  const colours = new Map();
  const lines = [];
  const stops = [];
  for (const r of routes) {
    if (!colours.has(r.vehicle_id)) colours.set(r.vehicle_id, COLOURS[colours.size % COLOURS.length]);
    const colour = colours.get(r.vehicle_id);
    const coords = [];
    r.stops.forEach((s, i) => {
      const j = jobsById.get(s.job_id);
      if (!j) return;
      const c = [j.place.lon, j.place.lat];
      coords.push(c);
      stops.push({ type: "Feature", geometry: { type: "Point", coordinates: c },
        properties: { n: String(i + 1), colour, job: j.id, route: r.id, state: j.state } });
    });
    if (coords.length > 1) {
      lines.push({ type: "Feature", geometry: { type: "LineString", coordinates: coords },
        properties: { colour, route: r.id, vehicle: r.vehicle_id } });
    }
  }
  return { lines: { type: "FeatureCollection", features: lines },
    stops: { type: "FeatureCollection", features: stops }, colours };
}

export class Dispatch {
  constructor(root, map, { may }) {
    this.root = root;
    this.map = map;
    this.may = may;
    this.jobs = [];
    this.routes = [];
    this.proposal = null;
    this.timer = null;
    this.etas = new Map(); // job id → its newest live ETA (the hub's `eta` messages)
    map.addSource("dispatch-routes", { type: "geojson", data: EMPTY });
    map.addSource("dispatch-stops", { type: "geojson", data: EMPTY });
    map.addLayer({ id: "dispatch-route-line", type: "line", source: "dispatch-routes",
      paint: { "line-color": ["get", "colour"], "line-width": 3, "line-opacity": 0.8 } });
    map.addLayer({ id: "dispatch-stop", type: "circle", source: "dispatch-stops",
      paint: { "circle-color": ["get", "colour"], "circle-radius": 9,
        "circle-stroke-color": "#fff", "circle-stroke-width": 1.5 } });
    map.addLayer({ id: "dispatch-stop-number", type: "symbol", source: "dispatch-stops",
      layout: { "icon-image": ["concat", "count:", ["get", "n"]], "icon-allow-overlap": true } });
    this.render();
  }

  render() {
    const [start, end] = todayShift();
    this.filter = h("select", { id: "job-state", "aria-label": "Jobs in state" },
      h("option", { value: "" }, "All states"), ...STATES.map((s) => h("option", { value: s }, s)));
    this.filter.addEventListener("change", () => this.table());
    this.file = h("input", { type: "file", id: "job-csv", accept: ".csv,text/csv", hidden: true });
    this.file.addEventListener("change", () => this.importFile());
    this.shiftStart = h("input", { type: "datetime-local", id: "shift-start", value: localInput(start) });
    this.shiftEnd = h("input", { type: "datetime-local", id: "shift-end", value: localInput(end) });
    const write = this.may("dispatcher");
    this.tbody = h("tbody");
    this.problems = h("ul", { id: "import-errors", class: "errors" });
    this.proposalBox = h("div", { id: "proposal" });
    this.pending = h("div", { id: "pending-proposals" });
    this.conflicts = h("ul", { id: "driver-conflicts", class: "errors" });
    this.linkBox = h("div", { id: "tracking-link", hidden: true });
    this.root.replaceChildren(
      h("div", { class: "row" }, this.filter,
        write ? h("button", { id: "import-jobs", onclick: () => this.file.click() }, "Import CSV") : "",
        this.file),
      this.problems,
      write ? h("div", { class: "row" }, h("label", {}, "Shift ", this.shiftStart), h("label", {}, "to ", this.shiftEnd),
        h("button", { id: "plan", onclick: () => this.plan() }, "Plan")) : "",
      this.pending,
      this.conflicts,
      this.proposalBox,
      this.linkBox,
      h("table", { id: "jobs", class: "table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "State"), h("th", {}, "Route"), h("th", {}, "Window"),
          h("th", {}, "ETA"), write ? h("th", {}, "Move to") : "", write ? h("th", {}, "Customer") : "")),
        this.tbody),
      h("div", { id: "routes-legend" }));
  }

  async load() {
    try {
      const [jobs, routes] = await Promise.all([get(`/api/jobs?limit=${JOBS_PAGE}`), get("/api/routes")]);
      this.jobs = jobs.jobs;
      this.routes = routes.routes.filter((r) => r.status !== "cancelled");
    } catch (err) {
      toast(`Dispatch: ${err.message}`, "error");
      return;
    }
    this.table();
    this.draw();
    this.loadProposals();
    this.loadConflicts();
  }

  /** Driver actions kept as conflicts (a stop re-planned or cancelled while the driver was
   * offline, docs/driver.md): shown until dispatch sorts them out. */
  async loadConflicts() {
    let rows = [];
    try {
      rows = (await get("/api/driver-actions?conflicts=true")).actions;
    } catch {
      rows = [];
    }
    this.conflicts.replaceChildren(...rows.slice(-20).map((a) => h("li", { "data-conflict": a.key },
      `Driver ${a.driver_id}: ${a.kind} ${a.job_id || ""} not applied — ${a.detail}`)));
  }

  /** Open proposals made on events (a re-plan waiting for approval); none without a planner. */
  async loadProposals() {
    let open = [];
    try {
      open = (await get("/api/dispatch/proposals")).proposals.filter((p) => p.cause !== "on demand");
    } catch {
      open = []; // a backend without a planner (503): nothing to approve
    }
    this.pending.replaceChildren(...open.map((p) => h("p", { class: "pending", "data-proposal": p.id },
      `Re-plan proposed (${p.cause}) · ${p.diff.changes.length} changes `,
      this.may("dispatcher") ? h("button", { onclick: () => this.showProposal(p) }, "Review") : "")));
  }

  /** A change arrived on the hub: ETAs update in place; the rest reloads once the burst is over. */
  changed(change) {
    if (change?.eta) {
      for (const s of change.eta.stops) this.etas.set(s.job_id, { ...s, basis: change.eta.basis });
      if (!this.etaTimer) { // many vehicles' ETAs in a burst: one table redraw
        this.etaTimer = setTimeout(() => { this.etaTimer = null; this.table(); }, RELOAD_AFTER_MS);
      }
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), RELOAD_AFTER_MS);
  }

  /** The ETA cell of a job: time ± spread, late against its window, the basis as a title. */
  etaCell(j) {
    const e = this.etas.get(j.id);
    if (!e || !j.route_id || !["assigned", "en_route", "arrived"].includes(j.state)) return h("td", { class: "eta" }, "");
    const spread = Math.round(e.spread_s / 60);
    return h("td", { class: e.late ? "eta late" : "eta", title: e.basis, "data-eta": String(e.eta_ms) },
      `${fmtTime(e.eta_ms)} ±${spread} min${e.late ? " · late" : ""}`);
  }

  /** Move a job onto another route in one action; the solver re-sequences that route. */
  moveCell(j) {
    if (!["unassigned", "assigned"].includes(j.state)) return h("td", {}, "");
    const open = this.routes.filter((r) => r.id !== j.route_id && ["draft", "dispatched", "active"].includes(r.status));
    const pick = h("select", { class: "move", "aria-label": `Move ${j.id} to route` },
      h("option", { value: "" }, "—"), ...open.map((r) => h("option", { value: r.id }, `${r.vehicle_id} (${r.id})`)));
    pick.addEventListener("change", async () => {
      if (!pick.value) return;
      try {
        await post(`/api/jobs/${encodeURIComponent(j.id)}/move`, { route_id: pick.value });
        toast(`${j.id} moved to ${pick.value}`);
      } catch (err) {
        toast(`Not moved: ${err.message}`, "error");
      }
      await this.load();
    });
    return h("td", {}, pick);
  }

  /** A new tracking link for the job's customer (docs/customers.md): its URL to copy and its
   * QR code, shown once (the backend keeps only the token's hash). */
  linkCell(j) {
    if (j.state === "cancelled") return h("td", {}, "");
    return h("td", {}, h("button", { class: "make-link", "aria-label": `Tracking link for ${j.id}`,
      onclick: () => this.makeLink(j) }, "Link"));
  }

  async makeLink(j) {
    let link;
    try {
      link = await post(`/api/jobs/${encodeURIComponent(j.id)}/links`);
    } catch (err) {
      toast(`No link: ${err.message}`, "error");
      return;
    }
    const url = h("input", { class: "link-url", readonly: true, value: link.url, "aria-label": "Tracking link" });
    const copy = h("button", { onclick: async () => {
      try {
        await navigator.clipboard.writeText(link.url);
        toast("Link copied");
      } catch {
        url.select(); // no clipboard permission: selected for Ctrl-C
      }
    } }, "Copy");
    const qr = h("img", { class: "link-qr", alt: `QR code of the tracking link for ${j.id}`,
      src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(link.qr_svg)}` });
    this.linkBox.dataset.job = j.id;
    this.linkBox.dataset.link = link.id;
    const list = h("ul", { class: "link-list" });
    this.linkBox.replaceChildren(h("p", {}, `Tracking link for ${j.id} (shown once): `),
      h("div", { class: "row" }, url, copy, h("button", { onclick: () => { this.linkBox.hidden = true; } }, "Close")), qr,
      h("p", {}, `The job's links (a revoked link answers 410 at once):`), list);
    this.linkBox.hidden = false;
    await this.listLinks(j, list);
  }

  /** The job's links, newest first, each live one with its Revoke button. */
  async listLinks(j, list) {
    let links;
    try {
      ({ links } = await get(`/api/jobs/${encodeURIComponent(j.id)}/links`));
    } catch (err) {
      toast(`Links not listed: ${err.message}`, "error");
      return;
    }
    list.replaceChildren(...links.slice().reverse().map((l) => {
      const state = l.revoked_ms ? `revoked ${fmtTime(l.revoked_ms)}` : "live";
      const revoke = l.revoked_ms ? "" : h("button", { class: "revoke-link", "data-link": l.id,
        "aria-label": `Revoke the link made ${fmtTime(l.created_ms)}`,
        onclick: async () => {
          try {
            await del(`/api/links/${encodeURIComponent(l.id)}`);
            toast("Link revoked");
          } catch (err) {
            toast(`Not revoked: ${err.message}`, "error");
          }
          await this.listLinks(j, list);
        } }, "Revoke");
      return h("li", { "data-link": l.id, "data-state": l.revoked_ms ? "revoked" : "live" },
        `${fmtTime(l.created_ms)} by ${l.created_by}: ${state} `, revoke);
    }));
  }

  table() {
    const state = this.filter.value;
    const rows = this.jobs.filter((j) => !state || j.state === state).map((j) => {
      const w = j.windows[0];
      return h("tr", { "data-job": j.id, "data-state": j.state },
        h("td", {}, j.name ? `${j.id} · ${j.name}` : j.id), h("td", { class: `state-${j.state}` }, j.state),
        h("td", {}, j.route_id ?? "–"), h("td", {}, w ? `${fmtTime(w.start_ms)}–${fmtTime(w.end_ms)}` : ""),
        this.etaCell(j), this.may("dispatcher") ? this.moveCell(j) : "",
        this.may("dispatcher") ? this.linkCell(j) : "");
    });
    this.tbody.replaceChildren(...rows);
  }

  draw() {
    const byId = new Map(this.jobs.map((j) => [j.id, j]));
    const { lines, stops, colours } = routeFeatures(this.routes, byId);
    this.map.getSource("dispatch-routes").setData(lines);
    this.map.getSource("dispatch-stops").setData(stops);
    this.drawn = stops; // what is on the map (read by the browser test)
    const legend = this.root.querySelector("#routes-legend");
    legend.replaceChildren(...[...colours].map(([v, c]) =>
      h("span", { class: "legend", "data-vehicle": v }, h("i", { style: `background:${c}` }), ` ${v}`)));
  }

  async importFile() {
    const f = this.file.files[0];
    this.file.value = "";
    if (!f) return;
    this.problems.replaceChildren();
    try {
      const r = await postText("/api/jobs/import", await f.text(), "text/csv");
      toast(`Imported ${r.imported} jobs (${r.unchanged} unchanged)`);
    } catch (err) {
      toast(`Nothing imported: ${err.message}`, "error");
      if (err instanceof ApiError && err.body?.errors) {
        this.problems.replaceChildren(...err.body.errors.map((e) =>
          h("li", {}, `line ${e.line}${e.id ? ` (${e.id})` : ""}: ${e.error}`)));
      }
    }
    await this.load();
  }

  async plan() {
    const shift = { start_ms: new Date(this.shiftStart.value).getTime(), end_ms: new Date(this.shiftEnd.value).getTime() };
    this.proposalBox.replaceChildren(h("p", {}, "Planning…"));
    try {
      this.proposal = await post("/api/dispatch/plan", { shift });
    } catch (err) {
      this.proposalBox.replaceChildren(h("p", { class: "error" }, `Plan: ${err.message}`));
      return;
    }
    this.showProposal(this.proposal);
  }

  showProposal(p) {
    const served = p.routes.reduce((n, r) => n + r.stops.length, 0);
    const changes = p.diff.changes.map((c) => h("li", {}, `${c.job_id}: ${c.kind}`
      + (c.to_vehicle ? ` → ${c.to_vehicle}` : "") + (c.from_vehicle ? ` (from ${c.from_vehicle})` : "")));
    this.proposalBox.replaceChildren(
      p.cause && p.cause !== "on demand" ? h("p", { class: "cause" }, `Because: ${p.cause}`) : "",
      h("p", { id: "proposal-summary" }, `${p.routes.length} routes, ${served} stops, `
        + `${p.unassigned.length} left out, ${Math.round(p.cost_s / 60)} min driving (${p.basis})`),
      h("ul", { class: "diff" }, ...changes),
      ...p.unassigned.map((u) => h("p", { class: "unassigned" }, `${u.job_id}: ${u.reason}`)),
      h("button", { id: "approve", onclick: () => this.approve(p) }, "Approve"));
  }

  async approve(p) {
    try {
      await post(`/api/dispatch/proposals/${encodeURIComponent(p.id)}/approve`);
      toast("Plan approved");
      this.proposalBox.replaceChildren();
    } catch (err) {
      toast(`Not approved: ${err.message}`, "error");
    }
    await this.load();
  }
}
