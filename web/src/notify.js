// The Notifications tab: the user's subscriptions (alerts and job events by e-mail, webhook or
// Apprise URL, with quiet hours and a digest), unsubscribing, and each one's delivery log
// (docs/notifications.md; the REST API under /api/notifications/subscriptions).
import { del, get, post, query } from "./api.js";
import { fmtTime, h } from "./dom.js";

const EVENTS = [
  ["job.dispatched", "dispatched"], ["job.arrived", "arrived"], ["job.completed", "completed"],
  ["job.failed", "failed"], ["job.eta_changed", "ETA changed"], ["job.late_risk", "late risk"],
  ["alert", "alerts"],
];
const LOG_SHOWN = 50; // the newest attempts; the API pages the rest
const PATH = "/api/notifications/subscriptions";

export class Notifications {
  constructor(root) {
    this.root = root;
    this.list = h("ul", { id: "subscriptions", class: "plain" });
    this.log = h("div", { id: "delivery-log" });
    this.answer = h("output", { id: "subscribe-answer", class: "answer" });
    root.append(h("h3", {}, "Subscribe"), this.form(), h("h3", {}, "Your subscriptions"),
      this.list, this.log);
  }

  form() {
    const boxes = EVENTS.map(([value, label]) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "event", value }), label));
    const channel = h("select", { id: "subscribe-channel", "aria-label": "Channel" },
      h("option", { value: "email" }, "e-mail"), h("option", { value: "webhook" }, "webhook"),
      h("option", { value: "apprise" }, "Apprise URL"));
    const target = h("input", { id: "subscribe-target", required: true, maxlength: 2048,
                               placeholder: "ops@example.com or https://…", "aria-label": "Target" });
    const etaMin = h("input", { id: "subscribe-eta-min", type: "number", min: 1, max: 720, value: "10",
                               "aria-label": "ETA change minutes" });
    const quietFrom = h("input", { id: "subscribe-quiet-from", type: "time", "aria-label": "Quiet from" });
    const quietTo = h("input", { id: "subscribe-quiet-to", type: "time", "aria-label": "Quiet to" });
    const digest = h("select", { id: "subscribe-digest", "aria-label": "Digest" },
      h("option", { value: "off" }, "each event at once"), h("option", { value: "hourly" }, "hourly digest"),
      h("option", { value: "daily" }, "daily digest"));
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    return h("form", { id: "subscribe-form", onsubmit: async (e) => {
      e.preventDefault();
      const events = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
      const body = { events, channel: channel.value, target: target.value.trim(), tz,
                     digest: digest.value };
      if (events.includes("job.eta_changed")) body.eta_change_min = Number(etaMin.value);
      if (quietFrom.value && quietTo.value) body.quiet = { from: quietFrom.value, to: quietTo.value };
      this.answer.textContent = "saving…";
      try {
        const got = await post(PATH, body);
        this.answer.textContent = got.secret
          ? `subscribed; the webhook's signing secret (shown once): ${got.secret}` : "subscribed";
        e.target.reset();
        await this.load();
      } catch (err) {
        this.answer.textContent = `refused: ${err.message}`;
      }
    } },
      h("div", { class: "checks" }, boxes),
      h("div", { class: "row" }, channel, target),
      h("div", { class: "row" }, h("label", {}, "ETA change ≥ min ", etaMin)),
      h("div", { class: "row" }, h("label", {}, "Quiet from ", quietFrom), h("label", {}, " to ", quietTo), digest),
      h("button", { type: "submit", id: "subscribe" }, "Subscribe"), this.answer);
  }

  async load() {
    let got;
    try {
      got = await get(PATH);
    } catch (err) {
      this.list.replaceChildren(h("li", { class: "muted" }, `cannot load: ${err.message}`));
      return;
    }
    this.list.replaceChildren(...(got.subscriptions.length ? got.subscriptions.map((s) => this.item(s))
      : [h("li", { class: "muted" }, "none yet")]));
  }

  item(s) {
    const quiet = s.quiet ? `, quiet ${s.quiet.from}–${s.quiet.to}` : "";
    const digest = s.digest !== "off" ? `, ${s.digest} digest` : "";
    return h("li", { dataset: { subscription: String(s.id) } },
      h("div", {}, `${s.channel} → ${s.target}`),
      h("div", { class: "muted" }, `${s.events.join(", ")}${quiet}${digest}`),
      h("button", { type: "button", class: "show-log", onclick: () => this.showLog(s) }, "Delivery log"),
      h("button", { type: "button", class: "unsubscribe", onclick: async () => {
        await del(`${PATH}/${s.id}`);
        this.log.replaceChildren();
        await this.load();
      } }, "Unsubscribe"));
  }

  async showLog(s) {
    const got = await get(`${PATH}/${s.id}/deliveries${query({ limit: LOG_SHOWN })}`);
    const rows = got.deliveries.map((d) => h("tr", { class: d.ok ? "ok" : "failed" },
      h("td", {}, fmtTime(d.at_ms)), h("td", {}, d.event_id), h("td", {}, d.ok ? "sent" : "failed"),
      h("td", {}, d.state), h("td", {}, d.detail)));
    this.log.replaceChildren(h("h3", {}, `Delivery log of #${s.id}`),
      rows.length ? h("table", { class: "log" },
        h("thead", {}, h("tr", {}, ["time", "event", "attempt", "now", "detail"].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows))
        : h("p", { class: "muted" }, "nothing sent yet"));
  }
}
