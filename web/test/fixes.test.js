// Hub positions packed for the worker → page trip (web/src/fixes.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { FIELDS, pack, unpack } from "../src/fixes.js";

test("positions survive packing; unknown speed or course come back as null", () => {
  const features = [
    { type: "Feature", geometry: { type: "Point", coordinates: [10.5, 53.25] },
      properties: { vehicle: "v1", time: "2026-12-01T12:00:00.000Z", speed_kmh: 42.5, course_deg: 271 } },
    { type: "Feature", geometry: { type: "Point", coordinates: [-0.125, 51.5] },
      properties: { vehicle: "v2", time: "2026-12-01T12:00:01.500Z", speed_kmh: null } },
    { type: "Feature", geometry: null, properties: { vehicle: "v3", time: "2026-12-01T12:00:00Z" } },
    { type: "Feature", geometry: { type: "Point", coordinates: [1, 2] }, properties: { vehicle: "v4" } },
  ];
  const packed = pack(features);
  assert.deepEqual(packed.ids, ["v1", "v2"]);
  assert.equal(packed.data.length, 2 * FIELDS);
  assert.equal(packed.data.buffer.byteLength, 2 * FIELDS * 8); // all of it is transferred
  const got = [];
  unpack(packed, (...a) => got.push(a));
  assert.deepEqual(got, [
    ["v1", 1796126400000, 10.5, 53.25, 42.5, 271],
    ["v2", 1796126401500, -0.125, 51.5, null, null],
  ]);
});

test("an empty frame packs to nothing", () => {
  const packed = pack([]);
  assert.deepEqual(packed.ids, []);
  let calls = 0;
  unpack(packed, () => calls++);
  assert.equal(calls, 0);
});
