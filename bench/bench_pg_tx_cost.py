"""The PostgreSQL writer's cost per reading at the transaction sizes of the 1 Hz ladder.

    .venv/bin/python bench/bench_pg_tx_cost.py [--vehicles 2000] [--rows 40] [--transactions 300]
        [--rounds 2]

At 1 Hz the writer's 20 ms pacing makes transactions of ~(vehicles / 50) readings (40 at
2,000 vehicles), so what a transaction costs whatever its size (BEGIN, the COPY statement, the
newest-position upsert, COMMIT and its WAL flush) is paid every few dozen readings. Each round
writes `--transactions` transactions of `--rows` readings (the load tester's: of `--vehicles`
vehicles at 1 Hz, a reading each per transaction, one in four a CAN snapshot of 8 signals)
through `PostgresStore.write` into a fresh database on a throw-away durable
server (the load tester's settings), and reports per reading the server's CPU (its
postmaster's tree), this process's CPU (the writer's Python and asyncpg, both threads) and the
wall time per transaction; then the same without the newest-position/signal upsert (its share,
not a configuration), alternating `--rounds` times.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pgfixture import PgServer  # noqa: E402

from backend.store.base import StoredReading  # noqa: E402
from backend.store.postgres import PostgresStore  # noqa: E402
from backend.store.postgres import readings as pg_readings  # noqa: E402
from geostream.clock import wall_ms  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402
from loadtest.report import ProcStats  # noqa: E402
from loadtest.store import PG_DURABLE  # noqa: E402


def transactions(vehicles: int, rows: int, count: int, t0: int) -> list[list[StoredReading]]:
    """`count` transactions of `rows` readings: each vehicle's next reading in turn."""
    sims = [SimVehicle(f"v{v:05d}", "", 1, 1.0, 0.0, t0, seed=v) for v in range(vehicles)]
    made = []
    for k in range(count * rows):
        sim = sims[k % vehicles]
        made.append(StoredReading.from_wire(sim.vehicle_id, 1,
                                            sim.wire_reading(k // vehicles + 1), t0))
    return [made[i:i + rows] for i in range(0, len(made), rows)]


def _no_upsert(write_plan):
    return lambda readings, maybe_stored: write_plan(readings, maybe_stored)._replace(
        latest=None)


async def one(url: str, vehicles: int, rows: int, count: int, server: ProcStats,
              upsert: bool) -> tuple[float, float, float]:
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    kept = pg_readings.write_plan
    try:
        t0 = wall_ms()
        batches = transactions(vehicles, rows, count + vehicles // rows, t0)
        for batch in batches[:vehicles // rows]:  # every vehicle's rows, partitions, statements
            await store.write(batch, [])
        batches = batches[vehicles // rows:]
        if not upsert:
            pg_readings.write_plan = _no_upsert(kept)
        s, c, w = server.cpu_s(), time.process_time(), time.perf_counter()
        for batch in batches:
            await store.write(batch, [])
        n = rows * count
        return ((server.cpu_s() - s) / n * 1e6, (time.process_time() - c) / n * 1e6,
                (time.perf_counter() - w) / count * 1e3)
    finally:
        pg_readings.write_plan = kept
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--transactions", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    with PgServer(dict(PG_DURABLE)) as pg:
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        server = ProcStats([postmaster], sample_rss=False)
        print(f"{a.transactions} transactions of {a.rows} readings, per reading:")
        for r in range(a.rounds):
            for name, upsert in (("as written", True), ("no upsert", False)):
                url = pg.create_database(f"tx{r}{int(upsert)}")
                srv, cpu, wall = asyncio.run(one(url, a.vehicles, a.rows, a.transactions, server,
                                                  upsert))
                print(f"  {name:10s} server {srv:5.1f} µs  writer process {cpu:5.1f} µs  "
                      f"wall {wall:5.2f} ms per transaction", flush=True)


if __name__ == "__main__":
    main()
