// Playback and export of a recorded route (web/src/track.js), against hand-computed values.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Playback, Track } from "../src/track.js";

const feature = {
  type: "Feature",
  geometry: { type: "LineString", coordinates: [[10, 50], [10.01, 50], [10.01, 50.01]] },
  // a 60 s gap between the second and third fix: playback must spend it, not skip it
  properties: { vehicle: "truck-<1>", times_ms: [1000, 2000, 62000], speeds_kmh: [10, 20, null] },
};

test("position between fixes is interpolated by device time", () => {
  const t = new Track(feature);
  const p = t.at(1500);
  assert.ok(Math.abs(p.lon - 10.005) < 1e-12 && p.lat === 50 && p.speed === 10 && p.index === 0);
  assert.ok(Math.abs(p.course - 90) < 0.01); // east (the great circle's start, a hair north of it)
  assert.ok(Math.abs(t.at(30000).course) < 1e-9); // north along the second leg
  const mid = t.at(32000); // halfway through the gap
  assert.equal(mid.index, 1);
  assert.ok(Math.abs(mid.lat - 50.005) < 1e-12);
  assert.equal(t.at(0).index, 0);
  assert.equal(t.at(99999).index, 2);
  assert.equal(t.at(99999).lat, 50.01);
});

test("playback at 60x crosses a 60 s gap in one wall second", () => {
  const p = new Playback(1000, 62000);
  p.rate = 60;
  p.play(0);
  assert.equal(p.tick(500), 31000);
  assert.equal(p.tick(1000), 61000);
  assert.equal(p.tick(2000), 62000); // clamped at the end, and stopped
  assert.equal(p.playing, false);
  p.play(3000); // playing again from the end starts over
  assert.equal(p.t, 1000);
});

test("paused playback does not move; seek clamps to the track", () => {
  const p = new Playback(1000, 62000);
  p.tick(0);
  assert.equal(p.tick(5000), 1000);
  p.seek(-5);
  assert.equal(p.t, 1000);
  p.seek(1e9);
  assert.equal(p.t, 62000);
});

test("speed segments, CSV and GPX carry every fix", () => {
  const t = new Track(feature);
  const seg = t.segments();
  assert.equal(seg.features.length, 2);
  assert.deepEqual(seg.features[1].geometry.coordinates, [[10.01, 50], [10.01, 50.01]]);
  assert.equal(seg.features[1].properties.speed, 20);
  const csv = t.toCsv().trim().split("\n");
  assert.equal(csv.length, 4);
  assert.equal(csv[1], "1970-01-01T00:00:01.000Z,1000,50,10,10");
  assert.equal(csv[3], "1970-01-01T00:01:02.000Z,62000,50.01,10.01,");
  const gpx = t.toGpx();
  assert.equal((gpx.match(/<trkpt /g) || []).length, 3);
  assert.ok(gpx.includes("<name>truck-&#60;1&#62;</name>"));
  assert.ok(gpx.includes("<speed>2.78</speed>")); // 10 km/h in m/s
});
