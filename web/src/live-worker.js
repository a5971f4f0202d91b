// The hub's WebSocket (/ws, docs/protocol.md §9), run in a worker so that inflating and
// parsing 10,000 positions a second never holds the page's main thread
// (bench/bench_browser.py). It subscribes batched (one FeatureCollection frame per hub tick)
// and deflated (a binary message of raw DEFLATE, about a fifth of the JSON's size), and posts
// to the page: {type: "state"}, {type: "fixes", ids, data, ms} (fixes.js, data transferred),
// {type: "alert"}, {type: "dispatch"}, {type: "warn"}, {type: "closed"}; the page decides about reconnecting.
import { pack } from "./fixes.js";

let ws = null;

function start(url, topics) {
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const sock = ws;
  let inOrder = Promise.resolve(); // frames inflate asynchronously: handle in arrival order
  postMessage({ type: "state", state: "connecting" });
  sock.onopen = () => {
    postMessage({ type: "state", state: "live" });
    for (const topic of topics) {
      sock.send(JSON.stringify({ op: "subscribe", topic, batch: true, deflate: true }));
    }
  };
  sock.onmessage = (e) => {
    inOrder = inOrder
      .then(async () => {
        const t0 = performance.now();
        const text = typeof e.data === "string" ? e.data : await inflate(e.data);
        handle(text, t0);
      })
      .catch((err) => postMessage({ type: "warn", text: `message: ${err}` }));
  };
  sock.onclose = () => {
    if (ws === sock) postMessage({ type: "closed" });
  };
}

function handle(text, t0) {
  const m = JSON.parse(text);
  if (m.type === "FeatureCollection" || m.feature) {
    const { ids, data } = pack(m.features ?? [m.feature]);
    postMessage({ type: "fixes", ids, data, ms: performance.now() - t0 }, [data.buffer]);
  } else if (m.alert && m.topic === "alerts") postMessage({ type: "alert", alert: m.alert });
  else if (m.topic === "dispatch" && (m.job || m.route || m.transition || m.eta || m.proposal)) {
    postMessage({ type: "dispatch", change: m });
  }
  else if (m.error) postMessage({ type: "warn", text: m.error });
}

/** The text of a raw DEFLATE stream (a deflated batch frame). */
async function inflate(buffer) {
  const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Response(stream).text();
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
