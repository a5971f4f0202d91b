// What changed in a driver's route (web/src/driver/diff.js): the banner the app shows when a
// dispatcher's change arrives.
import assert from "node:assert/strict";
import { test } from "node:test";

import { describe, routeChanges } from "../src/driver/diff.js";

const shift = (...stops) => ({ stops: stops.map(([id, state = "assigned"]) => ({ id, state })) });

test("a re-plan: a stop added, one taken off, the order changed", () => {
  const c = routeChanges(shift(["a"], ["b"], ["c"]), shift(["c"], ["a"], ["d"]));
  assert.deepEqual(c, { added: ["d"], removed: ["b"], cancelled: [], reordered: true });
  assert.equal(describe(c), "Dispatch changed your route — new stop: d; taken off: b; the order changed.");
});

test("a cancelled stop is named once; the driver's own progress is no change", () => {
  const before = shift(["a"], ["b"]);
  const c = routeChanges(before, shift(["a", "completed"], ["b", "cancelled"]));
  assert.deepEqual(c, { added: [], removed: [], cancelled: ["b"], reordered: false });
  assert.equal(describe(routeChanges(shift(["a"], ["b", "cancelled"]), shift(["a"], ["b", "cancelled"]))), "");
  assert.equal(describe(routeChanges(before, shift(["a", "arrived"], ["b"]))), "");
});

test("no shift before or after", () => {
  assert.deepEqual(routeChanges(null, shift(["a"])), { added: ["a"], removed: [], cancelled: [], reordered: false });
  assert.deepEqual(routeChanges(shift(["a"]), { stops: [] }).removed, ["a"]);
});
