// The hub's live feed: its WebSocket runs in a worker (live-worker.js: subscribes to every
// vehicle, batched, to alerts and dispatch changes; parses off the main thread); here positions
// go to the fleet (which coalesces them), alerts and dispatch changes to their handlers, and a
// dropped socket is reopened with a growing delay unless the session is gone.
import { unpack } from "./fixes.js";

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 15000; // a backend restart takes a few seconds; do not hammer it

export class LiveSocket {
  constructor({ workerUrl, topics, onFix, onAlert, onDispatch, onState, onClosedUnauthorized }) {
    this.topics = topics;
    this.onFix = onFix;
    this.onAlert = onAlert;
    this.onDispatch = onDispatch ?? (() => {});
    this.onState = onState;
    this.onClosedUnauthorized = onClosedUnauthorized;
    this.retryMs = RETRY_MIN_MS;
    this.stopped = false;
    this.received = 0; // positions received
    this.workerMs = 0; // time the worker spent parsing them (read by the benchmark)
    this.worker = new Worker(workerUrl, { type: "module" });
    this.worker.onmessage = (e) => this.onWorker(e.data);
  }

  onWorker(m) {
    if (m.type === "fixes") {
      this.received += m.ids.length;
      this.workerMs += m.ms;
      unpack(m, this.onFix);
    } else if (m.type === "alert") this.onAlert(m.alert);
    else if (m.type === "dispatch") this.onDispatch(m.change);
    else if (m.type === "state") {
      if (m.state === "live") this.retryMs = RETRY_MIN_MS;
      this.onState(m.state);
    } else if (m.type === "warn") console.warn("hub:", m.text);
    else if (m.type === "closed") this.closed();
  }

  start() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this.worker.postMessage({ op: "start", url, topics: this.topics });
  }

  async closed() {
    if (this.stopped) return;
    this.onState("offline");
    if (await this.onClosedUnauthorized()) return;
    setTimeout(() => this.start(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  stop() {
    this.stopped = true;
    this.worker.postMessage({ op: "stop" });
  }
}
