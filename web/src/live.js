// The hub's WebSocket (/ws, docs/protocol.md §9): subscribes to every vehicle (batched: one
// FeatureCollection frame per hub tick, deflated: a binary message of raw DEFLATE, about a
// fifth of the JSON's size) and to alerts, hands positions to the fleet (which coalesces them)
// and alerts to their handler, and reconnects with a growing delay after a drop.

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 15000; // a backend restart takes a few seconds; do not hammer it

export class LiveSocket {
  constructor({ topics, onFeature, onAlert, onState, onClosedUnauthorized }) {
    this.topics = topics;
    this.onFeature = onFeature;
    this.onAlert = onAlert;
    this.onState = onState;
    this.onClosedUnauthorized = onClosedUnauthorized;
    this.retryMs = RETRY_MIN_MS;
    this.stopped = false;
    this.received = 0;
  }

  start() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let inOrder = Promise.resolve(); // frames inflate asynchronously: handle in arrival order
    this.onState("connecting");
    ws.onopen = () => {
      this.retryMs = RETRY_MIN_MS;
      this.onState("live");
      for (const topic of this.topics) {
        ws.send(JSON.stringify({ op: "subscribe", topic, batch: true, deflate: true }));
      }
    };
    ws.onmessage = (e) => {
      this.received++;
      inOrder = inOrder
        .then(async () => this.handle(typeof e.data === "string" ? e.data : await inflate(e.data)))
        .catch((err) => console.warn("hub message:", err));
    };
    ws.onclose = async () => {
      if (this.stopped) return;
      this.onState("offline");
      if (await this.onClosedUnauthorized()) return;
      setTimeout(() => this.start(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    };
  }

  handle(text) {
    const m = JSON.parse(text);
    if (m.type === "FeatureCollection") for (const f of m.features) this.onFeature(f);
    else if (m.feature) this.onFeature(m.feature);
    else if (m.alert && m.topic === "alerts") this.onAlert(m.alert);
    else if (m.error) console.warn("hub:", m.error);
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close();
  }
}

/** The text of a raw DEFLATE stream (a deflated batch frame). */
async function inflate(buffer) {
  const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Response(stream).text();
}
