// What changed in the driver's route between two views of the shift (pure): stops added,
// removed, cancelled, and whether the order changed. Shown as the banner when a dispatcher's
// change arrives.

/** @returns {{added: string[], removed: string[], cancelled: string[], reordered: boolean}} */
export function routeChanges(before, after) {
  const ids = (s) => (s ? s.stops.map((x) => x.id) : []);
  const a = ids(before);
  const b = ids(after);
  const inA = new Set(a);
  const inB = new Set(b);
  const added = b.filter((id) => !inA.has(id));
  const removed = a.filter((id) => !inB.has(id));
  const stateA = new Map((before ? before.stops : []).map((x) => [x.id, x.state]));
  const cancelled = (after ? after.stops : [])
    .filter((x) => x.state === "cancelled" && stateA.get(x.id) !== "cancelled" && inA.has(x.id))
    .map((x) => x.id);
  const common = a.filter((id) => inB.has(id));
  const commonB = b.filter((id) => inA.has(id));
  const reordered = common.some((id, i) => commonB[i] !== id);
  return { added, removed, cancelled, reordered };
}

/** One sentence for the banner, or "" when nothing the driver sees changed. */
export function describe(c) {
  const parts = [];
  if (c.added.length) parts.push(`new stop${c.added.length > 1 ? "s" : ""}: ${c.added.join(", ")}`);
  if (c.removed.length) parts.push(`taken off: ${c.removed.join(", ")}`);
  if (c.cancelled.length) parts.push(`cancelled: ${c.cancelled.join(", ")}`);
  if (c.reordered) parts.push("the order changed");
  return parts.length ? `Dispatch changed your route — ${parts.join("; ")}.` : "";
}
