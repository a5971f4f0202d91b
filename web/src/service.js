// The vehicle panel's service section: the vehicle's service history and, for dispatchers and
// admins, the form that records a service (POST /api/vehicles/{v}/services), which closes the
// open "service" alert of that interval and restarts it (docs/maintenance.md).
import { get, post, query } from "./api.js";
import { fmtNum, fmtTime, h } from "./dom.js";

const HISTORY_SHOWN = 10; // the panel shows the newest; the API pages the rest

export class ServiceSection {
  constructor(id, { mayRecord, onRecorded }) {
    this.id = id;
    this.onRecorded = onRecorded;
    this.list = h("div", { id: "service-history" }, h("p", { class: "muted" }, "loading…"));
    this.interval = h("select", { id: "service-interval", required: true, "aria-label": "Service interval" });
    this.answer = h("output", { id: "service-answer", class: "answer" });
    this.root = h("section", { class: "service" },
      h("h3", {}, "Service history"), this.list,
      mayRecord ? this.form() : null);
  }

  form() {
    const field = (id, label, attrs) => h("label", {}, label, h("input", { id, ...attrs }));
    const when = field("service-date", "Date", { type: "date" });
    const odo = field("service-odometer", "Odometer km", { type: "number", min: 0, max: 10000000, step: "any" });
    const eng = field("service-engine-hours", "Engine h", { type: "number", min: 0, max: 1000000, step: "any" });
    const work = field("service-work", "Work done", { maxlength: 2000 });
    const cost = field("service-cost", "Cost", { type: "number", min: 0, max: 1000000000, step: "any" });
    const who = field("service-who", "Who", { maxlength: 200 });
    const value = (label) => label.querySelector("input").value.trim();
    const number = (label) => (value(label) === "" ? undefined : Number(value(label)));
    return h("form", { class: "service-form", onsubmit: async (e) => {
      e.preventDefault();
      const body = { interval: this.interval.value, odometer_km: number(odo), engine_h: number(eng),
                     cost: number(cost), work: value(work), who: value(who),
                     time: value(when) || undefined };
      for (const k of Object.keys(body)) if (body[k] === undefined || body[k] === "") delete body[k];
      this.answer.textContent = "saving…";
      try {
        const got = await post(`/api/vehicles/${encodeURIComponent(this.id)}/services`, body);
        this.answer.textContent = `recorded #${got.service.id}` +
          (got.closed_alerts ? `, ${got.closed_alerts} alert closed` : "");
        e.target.reset();
        await this.refresh();
        this.onRecorded();
      } catch (err) {
        this.answer.textContent = `refused: ${err.message}`;
      }
    } },
      h("h3", {}, "Record a service"),
      h("div", { class: "service-fields" },
        h("label", {}, "Interval", this.interval), when, odo, eng, work, cost, who),
      h("button", { type: "submit", id: "service-record" }, "Record"),
      this.answer);
  }

  async refresh() {
    let got;
    try {
      got = await get(`/api/vehicles/${encodeURIComponent(this.id)}/services${query({ limit: HISTORY_SHOWN })}`);
    } catch (err) {
      this.list.replaceChildren(h("p", { class: "muted" }, `unavailable: ${err.message}`));
      return;
    }
    const chosen = this.interval.value;
    this.interval.replaceChildren(...got.intervals.map((n) => h("option", { value: n }, n)));
    if (got.intervals.includes(chosen)) this.interval.value = chosen;
    this.list.replaceChildren(got.services.length
      ? h("ul", { class: "service-list" }, got.services.map((s) => h("li", { dataset: { id: String(s.id) } },
          h("strong", {}, s.interval), ` · ${fmtTime(s.time_ms)}`,
          s.odometer_km == null ? "" : ` · ${fmtNum(s.odometer_km, 0, "km")}`,
          s.work ? ` · ${s.work}` : "", s.cost == null ? "" : ` · cost ${fmtNum(s.cost, 2)}`,
          s.who ? ` · ${s.who}` : "")))
      : h("p", { class: "muted" }, "no service recorded"));
  }
}
