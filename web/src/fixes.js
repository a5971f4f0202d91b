// Hub positions packed for the trip from the socket's worker to the page (pure).
//
// The worker parses the hub's JSON frames (docs/protocol.md §9) off the main thread and hands
// the page one transferable Float64Array per frame instead of thousands of feature objects:
// FIELDS numbers per position, ids in a plain array. bench/bench_browser.py: JSON.parse and
// coalescing of 10,000 positions/s took 90-270 ms/s of the main thread.

export const FIELDS = 5; // time ms, lon, lat, speed km/h, course deg (NaN: unknown)

/** Pack hub features (GeoJSON Points with vehicle/time/speed_kmh/course_deg) for transfer. */
export function pack(features) {
  const ids = new Array(features.length);
  const data = new Float64Array(features.length * FIELDS);
  let n = 0;
  for (const f of features) {
    const p = f.properties;
    const c = f.geometry?.coordinates;
    const t = Date.parse(p?.time);
    if (!c || !Number.isFinite(t)) continue; // not a position: nothing to draw
    const o = n * FIELDS;
    ids[n] = p.vehicle;
    data[o] = t;
    data[o + 1] = c[0];
    data[o + 2] = c[1];
    data[o + 3] = p.speed_kmh ?? NaN;
    data[o + 4] = p.course_deg ?? NaN;
    n++;
  }
  ids.length = n;
  return { ids, data: n * FIELDS === data.length ? data : data.slice(0, n * FIELDS) };
}

/** Call `each(id, timeMs, lon, lat, speed|null, course|null)` for every packed position. */
export function unpack({ ids, data }, each) {
  const num = (x) => (Number.isNaN(x) ? null : x);
  for (let i = 0; i < ids.length; i++) {
    const o = i * FIELDS;
    each(ids[i], data[o], data[o + 1], data[o + 2], num(data[o + 3]), num(data[o + 4]));
  }
}
