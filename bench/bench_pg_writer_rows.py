"""The PostgreSQL writer's Python per transaction, in µs per reading, at 1 Hz and in a storm.

    .venv/bin/python bench/bench_pg_writer_rows.py [--rounds 5]

What backend/store/postgres/readings.py does on the gateway's event loop for each transaction
before and after its statements: the routing hint (`CommittedRanges.maybe_stored`), the binary
COPY records, the newest position/signal arguments and the committed ranges
(`CommittedRanges.add`), which `write_plan` makes in one pass. Two shapes of the load tester's
readings: 1 Hz (1,000 vehicles, 20 seconds, transactions of 50 readings of 50 vehicles, as the
writer's 20 ms pacing groups them) and a storm (50 vehicles, batches of 200 of one vehicle).
Process CPU, best of `--rounds`.
bench_reading_path's "writer rows" is the storm shape only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.store.committed import CommittedRanges  # noqa: E402
from backend.store.postgres import readings as pg  # noqa: E402
from backend.store.rows import StoredReading  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402

NOW_MS = 1_765_000_000_000
HZ1_TRANSACTION = 50  # readings per transaction at 1 Hz
STORM_BATCH = 200


def per_reading_us(transactions: list[list[StoredReading]]) -> float:
    committed = CommittedRanges()
    t0 = time.process_time()
    for t in transactions:
        plan = pg.write_plan(t, committed.maybe_stored)
        for (vehicle, epoch), mine in plan.committed.items():
            committed.add(vehicle, epoch, mine)
    return (time.process_time() - t0) / sum(map(len, transactions)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    sims = [SimVehicle(f"v{v:04d}", "", 1, 1.0, 0.0, NOW_MS - 600_000, seed=v)
            for v in range(1000)]
    rows = [StoredReading.from_wire(s.vehicle_id, 1, s.wire_reading(q), NOW_MS)
            for q in range(1, 21) for s in sims]
    hz1 = [rows[i:i + HZ1_TRANSACTION] for i in range(0, len(rows), HZ1_TRANSACTION)]
    storm = []
    for s in sims[:50]:
        mine = [StoredReading.from_wire(s.vehicle_id, 1, s.wire_reading(q), NOW_MS)
                for q in range(1, 2 * STORM_BATCH + 1)]
        storm += [mine[i:i + STORM_BATCH] for i in range(0, len(mine), STORM_BATCH)]
    print(f"writer rows, µs per reading (best of {a.rounds}): "
          f"1 Hz {min(per_reading_us(hz1) for _ in range(a.rounds)):.2f}, "
          f"storm {min(per_reading_us(storm) for _ in range(a.rounds)):.2f}")


if __name__ == "__main__":
    main()
