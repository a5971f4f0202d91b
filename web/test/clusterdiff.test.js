// What the clustered source is told (web/src/clusterdiff.js): only changes a dispatcher can see.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ClusterDiff } from "../src/clusterdiff.js";

const NOW = 1_000_000;
const ZOOM = 9; // 3 px at zoom 9: 3 * 360 / (512 * 2^9) degrees
const TOL = 0.004119873046875;

const vehicle = (id, lon, lat, extra = {}) =>
  ({ id, lon, lat, timeMs: NOW, speed: 40, course: 90, openAlerts: 0, connected: true, ...extra });
const fleet = (...vs) => new Map(vs.map((v) => [v.id, v]));

test("the tolerance is 3 px in degrees at the zoom", () => {
  assert.equal(ClusterDiff.toleranceDeg(ZOOM), TOL);
  assert.equal(ClusterDiff.toleranceDeg(ZOOM + 1), TOL / 2);
});

test("the first diff adds every located vehicle, then nothing is re-sent", () => {
  const d = new ClusterDiff();
  const vs = fleet(vehicle("a", 10, 53), vehicle("b", 11, 54, { speed: 0 }), vehicle("c", null, null));
  assert.deepEqual(d.diff(vs, NOW, { zoom: ZOOM }), { add: [
    { type: "Feature", geometry: { type: "Point", coordinates: [10, 53] },
      properties: { id: "a", state: "moving", course: 90, alerts: 0 } },
    { type: "Feature", geometry: { type: "Point", coordinates: [11, 54] },
      properties: { id: "b", state: "parked", course: 90, alerts: 0 } },
  ] });
  assert.equal(d.diff(vs, NOW, { zoom: ZOOM }), null);
});

test("moves within the tolerance wait until they add up past it", () => {
  const d = new ClusterDiff();
  const a = vehicle("a", 10, 53);
  const vs = fleet(a);
  d.diff(vs, NOW, { zoom: ZOOM });
  a.lon = 10.003;
  assert.equal(d.diff(vs, NOW, { zoom: ZOOM }), null);
  a.lon = 10.006; // 0.006 from what the source holds, 0.003 from the last look
  assert.deepEqual(d.diff(vs, NOW, { zoom: ZOOM }),
    { update: [{ id: "a", newGeometry: { type: "Point", coordinates: [10.006, 53] } }] });
  a.lat = 53 - TOL * 1.01;
  assert.deepEqual(d.diff(vs, NOW, { zoom: ZOOM }).update[0].newGeometry.coordinates,
    [10.006, 53 - TOL * 1.01]);
  // zoomed out further, the same move is within the tolerance
  a.lon = 10.012;
  assert.equal(d.diff(vs, NOW, { zoom: ZOOM - 1 }), null);
});

test("a change of state, alerts or heading is sent without a geometry", () => {
  const d = new ClusterDiff();
  const a = vehicle("a", 10, 53, { course: 350 });
  const vs = fleet(a);
  d.diff(vs, NOW, { zoom: ZOOM });
  a.course = 8; // 18 degrees, through north
  assert.equal(d.diff(vs, NOW, { zoom: ZOOM }), null);
  a.course = 15; // 25 degrees from what the source holds
  assert.deepEqual(d.diff(vs, NOW, { zoom: ZOOM }), { update: [{ id: "a", addOrUpdateProperties: [
    { key: "state", value: "moving" }, { key: "alerts", value: 0 }, { key: "course", value: 15 }] }] });
  a.openAlerts = 1;
  assert.deepEqual(d.diff(vs, NOW, { zoom: ZOOM }).update[0].addOrUpdateProperties,
    [{ key: "state", value: "alert" }, { key: "alerts", value: 1 }, { key: "course", value: 15 }]);
  a.openAlerts = 0;
  a.timeMs = NOW - 400_000; // no fix for 400 s: offline
  assert.equal(d.diff(vs, NOW, { zoom: ZOOM }).update[0].addOrUpdateProperties[0].value, "offline");
});

test("hidden and vanished vehicles are removed, shown ones come back", () => {
  const d = new ClusterDiff();
  const vs = fleet(vehicle("a", 10, 53), vehicle("b", 11, 54));
  d.diff(vs, NOW, { zoom: ZOOM });
  assert.deepEqual(d.diff(vs, NOW, { zoom: ZOOM, hidden: new Set(["a"]) }), { remove: ["a"] });
  assert.equal(d.diff(vs, NOW, { zoom: ZOOM, hidden: new Set(["a"]) }), null);
  assert.deepEqual(d.diff(vs, NOW, { zoom: ZOOM }).add.map((f) => f.properties.id), ["a"]);
  vs.delete("b");
  assert.deepEqual(d.diff(vs, NOW, { zoom: ZOOM }), { remove: ["b"] });
});
