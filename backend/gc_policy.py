"""The backend process's garbage-collector policy: what it allocated to start is frozen, and
the youngest generation is collected every `GEN0_THRESHOLD` container objects, not every 700.

CPython's cycle collector runs its youngest generation after every 700 net allocations of
container objects and, every so often, a full collection that walks every tracked object. The
gateway frees almost everything it allocates per reading by reference counting (cycles are
rare), so those collections find little; yet with the default thresholds they took 14 % of the
gateway's CPU in a 2,000-vehicle load test (1.7 of 12.0 s, full collections up to 231 ms each
on the loaded machine), the full ones walking the modules, classes and functions of start-up
again and again. Frozen after start-up (`gc.freeze`, after one collection so no garbage is
kept) and with the thresholds below, the same load test spent 0.4 of 11.3 s
(docs/benchmarks.md, "The gateway path, session 10").
"""

from __future__ import annotations

import gc

# Net container allocations between two collections of the youngest generation. Garbage in
# cycles waits at most this long: ~50,000 small objects, a few MB.
GEN0_THRESHOLD = 50_000
# Collections of one generation per collection of the next (defaults 10 and 10): what
# survives the youngest is mostly a connection's long-lived state, not worth walking often.
# A full collection also waits until a quarter more objects than at the last one survived
# (CPython's own rule), so these only space out the middle and full ones further.
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def after_start() -> None:
    """Collect once, freeze what start-up left (never walked again), raise the threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
