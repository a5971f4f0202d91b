// The hub's WebSocket (/ws, docs/protocol.md §9), run in a worker so that parsing 10,000
// positions a second never holds the page's main thread (bench/bench_browser.py). It posts
// to the page: {type: "state"}, {type: "fixes", ids, data, ms} (fixes.js, data transferred),
// {type: "alert"}, {type: "warn"}, {type: "closed"}; the page decides about reconnecting.
import { pack } from "./fixes.js";

let ws = null;

function start(url, topics) {
  ws = new WebSocket(url);
  const sock = ws;
  postMessage({ type: "state", state: "connecting" });
  sock.onopen = () => {
    postMessage({ type: "state", state: "live" });
    for (const topic of topics) sock.send(JSON.stringify({ op: "subscribe", topic, batch: true }));
  };
  sock.onmessage = (e) => {
    const t0 = performance.now();
    const m = JSON.parse(e.data);
    if (m.type === "FeatureCollection" || m.feature) {
      const { ids, data } = pack(m.features ?? [m.feature]);
      postMessage({ type: "fixes", ids, data, ms: performance.now() - t0 }, [data.buffer]);
    } else if (m.alert && m.topic === "alerts") postMessage({ type: "alert", alert: m.alert });
    else if (m.error) postMessage({ type: "warn", text: m.error });
  };
  sock.onclose = () => {
    if (ws === sock) postMessage({ type: "closed" });
  };
}

onmessage = (e) => {
  const { op, url, topics } = e.data;
  if (op === "start") start(url, topics);
  else if (op === "stop" && ws) {
    const sock = ws;
    ws = null;
    sock.close();
  }
};
