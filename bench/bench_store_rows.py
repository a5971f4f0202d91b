"""The SQLite store thread's Python per reading, sans IO: the parameters of one commit built
by `backend.store.sqlite.readings.write_rows` (the rows, the newest positions, the CAN
readings whose signals SQLite reads at the move since session 14: `db.PendingLast`), by
sessions 11–13's one pass (`bench.store_before.session13_rows`: the rows, the newest
positions and every signal's row) and by the way before that (a row per attribute, then
`newest_positions` and `newest_signals` over the batch again).

    .venv/bin/python bench/bench_store_rows.py [--vehicles 10000] [--batch-ms 20]
        [--rounds 7]

No database: only the Python the store thread runs, holding the GIL, before its three
`executemany` calls. The batches are the load tester's fleet at 1 Hz (3 positions to 1 CAN
snapshot of 8 signals and its bus), `--batch-ms` of readings per commit (the writer's
pacing), under the gateway's collector settings (`backend.gc_policy.after_start`: the
store thread's garbage is collected on the gateway's schedule); the two ways take turns
round by round, so a busy machine slows both alike. Prints
the thread CPU per reading of each (the median round) and checks they give the same
parameters.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import gc_policy  # noqa: E402
from backend.store.rows import newest_positions, newest_signals, signal_json  # noqa: E402
from backend.store.sqlite.readings import write_rows  # noqa: E402
from bench.bench_store_write import EPOCH, reading  # noqa: E402
from bench.store_before import session13_rows  # noqa: E402


def before(readings):
    """The parameters as `SqliteReadings._write` built them before `write_rows`."""
    rows = [(r.vehicle_id, r.epoch, r.seq, r.time_ms, r.kind, r.lat, r.lon, r.alt_m,
             r.speed_kmh, r.course_deg, r.fix, r.sats, r.hdop, r.data_json(), r.received_ms)
            for r in readings]
    last = [(r.vehicle_id, r.time_ms, r.lat, r.lon, r.speed_kmh, r.course_deg, r.epoch, r.seq)
            for r in newest_positions(readings).values()]
    signals = [(v, name, signal_json(value), t)
               for (v, name), (value, t) in newest_signals(readings).items()]
    return rows, last, signals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--batch-ms", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    rnd = random.Random(1).random
    order = list(range(a.vehicles))
    random.Random(2).shuffle(order)
    per_commit = max(1, a.vehicles * a.batch_ms // 1000)
    seconds = [[reading(v, q, rnd) for v in order] for q in range(1, 5)]
    batches = [s[i:i + per_commit] for s in seconds for i in range(0, len(s), per_commit)]
    n = sum(map(len, batches))
    for b in batches:
        old, new = before(b), session13_rows(b)
        assert old[0] == new[0] and old[1] == new[1] and sorted(old[2]) == sorted(new[2])
        assert write_rows(b)[0] == old[0]
    gc_policy.after_start()
    ways = {"before": before, "one pass": session13_rows, "session 14": write_rows}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for k in range(a.rounds):
        for name, way in (ways.items() if k % 2 else reversed(ways.items())):
            c0 = time.thread_time()
            for b in batches:
                way(b)
            cpu[name].append((time.thread_time() - c0) / n)
    print(f"{a.vehicles} vehicles × 1 Hz, {per_commit} readings per commit, {n} readings per "
          f"round, {a.rounds} rounds (epoch {EPOCH}); store thread Python per reading "
          f"(median round):")
    base = statistics.median(cpu["before"])
    for name, xs in cpu.items():
        m = statistics.median(xs)
        print(f"  {name:<10} {m * 1e6:5.2f} µs ({m / base:.2f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
