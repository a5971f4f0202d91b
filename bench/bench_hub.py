"""Live hub publish cost with per-subscriber coalescing, next to a plain-append baseline.

    .venv/bin/python bench/bench_hub.py [--vehicles 500] [--subscribers 50] [--rounds 40]

In one run: a fleet of `--vehicles` publishes `--rounds` positions each to `--subscribers`
clients on `live_updates:all`; half the clients drain after every round (fast), half never
(slow). Baseline: the same fan-out appending each message to a plain list per client (the
cheapest possible queue, unbounded). Prints µs per published position for both, their ratio,
and what a slow client holds at the end (coalesced: one per vehicle; baseline: everything).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.hub import ALL, Hub, position_feature  # noqa: E402


def run_hub(vehicles: int, subscribers: int, rounds: int) -> tuple[float, int]:
    hub = Hub()
    subs = [hub.new_subscriber() for _ in range(subscribers)]
    for s in subs:
        hub.subscribe(s, ALL)
        s.drain()
    fast = subs[: subscribers // 2]
    t0 = time.perf_counter()
    for t in range(1, rounds + 1):
        for v in range(vehicles):
            hub.position(f"v{v}", t, position_feature(f"v{v}", t, 50.0, 8.0, 30.0, 90.0, t))
        for s in fast:
            s.drain()
    elapsed = time.perf_counter() - t0
    return elapsed / (vehicles * rounds) * 1e6, len(subs[-1])


def run_baseline(vehicles: int, subscribers: int, rounds: int) -> tuple[float, int]:
    queues: list[list] = [[] for _ in range(subscribers)]
    topics = [{ALL} for _ in range(subscribers)]
    last: dict[str, int] = {}
    fast = queues[: subscribers // 2]
    t0 = time.perf_counter()
    for t in range(1, rounds + 1):
        for v in range(vehicles):
            vid = f"v{v}"
            if last.get(vid, 0) >= t:
                continue
            last[vid] = t
            f = position_feature(vid, t, 50.0, 8.0, 30.0, 90.0, t)
            for q, tp in zip(queues, topics, strict=True):
                if ALL in tp:
                    q.append({"topic": ALL, "feature": f})
        for q in fast:
            q.clear()
    elapsed = time.perf_counter() - t0
    return elapsed / (vehicles * rounds) * 1e6, len(queues[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vehicles", type=int, default=500)
    p.add_argument("--subscribers", type=int, default=50)
    p.add_argument("--rounds", type=int, default=40)
    a = p.parse_args()
    base_us, base_held = run_baseline(a.vehicles, a.subscribers, a.rounds)
    hub_us, hub_held = run_hub(a.vehicles, a.subscribers, a.rounds)
    print(f"{a.vehicles} vehicles x {a.rounds} rounds -> {a.subscribers} subscribers "
          f"(half never drain)")
    print(f"baseline (plain append): {base_us:8.1f} us/position, slow client holds {base_held}")
    print(f"hub (coalescing):        {hub_us:8.1f} us/position, slow client holds {hub_held}")
    print(f"ratio hub/baseline: {hub_us / base_us:.2f}")


if __name__ == "__main__":
    main()
