// Routes on the map (web/src/dispatch.js): one colour per vehicle, stops numbered in route order.
import assert from "node:assert/strict";
import { test } from "node:test";
import { routeFeatures } from "../src/dispatch.js";

const job = (id, lon, lat, state = "assigned") => [id, { id, state, place: { lon, lat } }];
const jobs = new Map([job("a", 24.9, 60.1), job("b", 24.95, 60.15), job("c", 25, 60.2, "completed")]);

test("each vehicle gets its own colour and its stops are numbered in order", () => {
  const routes = [
    { id: "r1", vehicle_id: "v1", stops: [{ job_id: "b" }, { job_id: "a" }] },
    { id: "r2", vehicle_id: "v2", stops: [{ job_id: "c" }] },
    { id: "r3", vehicle_id: "v1", stops: [] },
  ];
  const { lines, stops, colours } = routeFeatures(routes, jobs);
  assert.equal(colours.size, 2);
  assert.notEqual(colours.get("v1"), colours.get("v2"));
  assert.deepEqual(stops.features.map((f) => [f.properties.job, f.properties.n]), [["b", "1"], ["a", "2"], ["c", "1"]]);
  assert.deepEqual(lines.features.map((f) => f.geometry.coordinates), [[[24.95, 60.15], [24.9, 60.1]]]); // r2: one stop, no line
  assert.equal(stops.features[2].properties.colour, colours.get("v2"));
});

test("a stop whose job is not visible is left out, the others keep their numbers", () => {
  const { stops } = routeFeatures([{ id: "r", vehicle_id: "v", stops: [{ job_id: "x" }, { job_id: "a" }] }], jobs);
  assert.deepEqual(stops.features.map((f) => f.properties.n), ["2"]);
});
