// The live fleet (web/src/fleet.js): coalescing, no moving backwards, gliding, states.
import assert from "node:assert/strict";
import { test } from "node:test";
import { classify, Fleet, glidePx, MAX_GLIDE_MS, OFFLINE_S, STALE_S } from "../src/fleet.js";

const pos = (vehicle, timeMs, lon, lat, speed = 30, course = 90) => ({
  type: "Feature",
  geometry: { type: "Point", coordinates: [lon, lat] },
  properties: { vehicle, time: new Date(timeMs).toISOString(), speed_kmh: speed, course_deg: course },
});

test("many updates between frames are applied as the newest one", () => {
  const f = new Fleet();
  for (let i = 0; i < 100; i++) f.push(pos("a", 1000 + i, i, 0));
  f.push(pos("a", 500, -1, 0)); // older: ignored
  assert.equal(f.pending.size, 1);
  assert.equal(f.apply(0), 1);
  assert.equal(f.vehicles.get("a").lon, 99);
  assert.equal(f.apply(0), 0);
});

test("an older position never moves a vehicle backwards", () => {
  const f = new Fleet();
  f.push(pos("a", 2000, 5, 0));
  f.apply(0);
  f.push(pos("a", 1000, 1, 0));
  assert.equal(f.apply(10), 0);
  assert.equal(f.vehicles.get("a").lon, 5);
});

test("a vehicle glides from where it was shown to its new position", () => {
  const f = new Fleet();
  f.push(pos("a", 0, 0, 0, 30, 350));
  f.apply(0);
  f.push(pos("a", 1000, 1, 0, 30, 10)); // one second later, heading across north
  f.apply(5000);
  const v = f.vehicles.get("a");
  assert.deepEqual(f.shown(v, 5000), { lon: 0, lat: 0, course: 350, gliding: true });
  const half = f.shown(v, 5500);
  assert.equal(half.lon, 0.5);
  assert.ok(Math.abs(half.course - 0) < 1e-9); // the short way round, through north
  assert.equal(f.shown(v, 7000).lon, 1);
  assert.equal(f.shown(v, 5999).gliding, true);
  assert.equal(f.shown(v, 6000).gliding, false);
  // a long gap glides for at most MAX_GLIDE_MS
  f.push(pos("a", 100000, 2, 0));
  f.apply(10000);
  assert.equal(f.shown(v, 10000 + MAX_GLIDE_MS).lon, 2);
});

test("states: alert, offline, stale, moving, parked", () => {
  const now = 1_000_000;
  const v = { timeMs: now, speed: 20, openAlerts: 0, connected: true };
  assert.equal(classify(v, now), "moving");
  assert.equal(classify({ ...v, speed: 1 }, now), "parked");
  assert.equal(classify({ ...v, timeMs: now - (STALE_S + 1) * 1000 }, now), "stale");
  assert.equal(classify({ ...v, timeMs: now - (OFFLINE_S + 1) * 1000 }, now), "offline");
  assert.equal(classify({ ...v, connected: false }, now), "offline");
  assert.equal(classify({ ...v, connected: false, openAlerts: 2 }, now), "alert");
  assert.equal(classify({ timeMs: null, openAlerts: 0 }, now), "offline");
});

test("REST items merge link, alerts and a newer position", () => {
  const f = new Fleet();
  f.merge({ id: "b", position: { lon: 3, lat: 4, time_ms: 7000, speed_kmh: 0, course_deg: 0 },
            link: { connected: true, connections: 1 }, open_alerts: 1 }, 8000);
  const v = f.vehicles.get("b");
  assert.deepEqual([v.lon, v.lat, v.connected, v.openAlerts], [3, 4, true, 1]);
  assert.deepEqual(f.counts(8000), { moving: 0, parked: 0, stale: 0, offline: 0, alert: 1 });
});

test("a glide's length on screen: east, north at 60 degrees (Mercator doubles it), a turn", () => {
  const v = (dlon, dlat, lat, c0, c1) =>
    ({ lon: 10 + dlon, lat: lat + dlat, course: c1, from: { lon: 10, lat, course: c0 } });
  assert.ok(Math.abs(glidePx(v(0.01, 0, 0, 90, 90), 100, 12) - 1) < 1e-9);
  assert.ok(Math.abs(glidePx(v(0, 0.01, 60, 0, 0), 100, 12) - 2) < 0.01);
  // 350 to 10 degrees is a 20 degree turn through north, not 340
  assert.ok(Math.abs(glidePx(v(0, 0, 0, 350, 10), 100, 12) - (20 * Math.PI / 180) * 12) < 1e-9);
});
