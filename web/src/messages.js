// The vehicle panel's messages with the vehicle's driver (docs/driver.md, "Messages"): the
// thread (GET /api/vehicles/{v}/messages, read again with the panel) and, for dispatchers and
// admins, the form that writes to whoever drives the vehicle now.
import { get, post } from "./api.js";
import { fmtTime, h } from "./dom.js";

const SHOWN = 20; // the newest messages of the thread

export class MessagesSection {
  constructor(id, { mayWrite }) {
    this.id = id;
    this.list = h("ul", { id: "vehicle-messages", class: "messages" });
    this.answer = h("output", { id: "message-answer", class: "answer" });
    this.root = h("section", { class: "messages" }, h("h3", {}, "Messages with the driver"),
      this.list, mayWrite ? this.form() : null);
  }

  form() {
    const text = h("input", { id: "message-text", maxlength: 2000, required: true,
      "aria-label": "Message to the driver" });
    return h("form", { class: "message-form", onsubmit: async (e) => {
      e.preventDefault();
      this.answer.textContent = "sending…";
      try {
        await post(`/api/vehicles/${encodeURIComponent(this.id)}/messages`, { text: text.value });
        text.value = "";
        this.answer.textContent = "sent";
        await this.refresh();
      } catch (err) {
        this.answer.textContent = `refused: ${err.message}`;
      }
    } }, h("div", { class: "row2" }, text, h("button", { type: "submit", id: "message-send" }, "Send")),
    this.answer);
  }

  async refresh() {
    try {
      const { messages } = await get(`/api/vehicles/${encodeURIComponent(this.id)}/messages`);
      const shown = messages.slice(-SHOWN);
      this.list.replaceChildren(...(shown.length ? shown.map((m) => h("li", { class: m.direction },
        `${fmtTime(m.sent_ms)} ${m.direction === "to_driver" ? m.author : `driver ${m.driver_id}`}: ${m.text}`))
        : [h("li", { class: "muted" }, "none")]));
    } catch { /* the panel's refresh says what is wrong */ }
  }
}
