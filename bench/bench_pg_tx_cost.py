"""The PostgreSQL writer's cost per reading at the transaction sizes of the 1 Hz ladder.

    .venv/bin/python bench/bench_pg_tx_cost.py [--rows 40] [--transactions 300] [--rounds 2]

At 1 Hz the writer's 20 ms pacing makes transactions of ~(vehicles / 50) readings (40 at
2,000 vehicles), so what a transaction costs whatever its size (BEGIN, the COPY statement, the
newest-position upsert, COMMIT and its WAL flush) is paid every few dozen readings. Each round
writes `--transactions` transactions of `--rows` readings (half positions, half CAN snapshots
of 2,000 vehicles) through `PostgresStore.write` into a fresh database on a throw-away durable
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
from loadtest.report import ProcStats  # noqa: E402
from loadtest.store import PG_DURABLE  # noqa: E402

VEHICLES = 2000


def transaction(n: int, k: int, t0: int) -> list[StoredReading]:
    out = []
    for i in range(n):
        q = k * n + i + 1
        v = f"v{q % VEHICLES:05d}"
        if i % 2:
            out.append(StoredReading(v, 1, q, t0 + q, "can", received_ms=t0,
                                     data={"rpm": 900 + i, "EngCoolantTemp": 90.5,
                                           "bus": "can0"}))
        else:
            out.append(StoredReading(v, 1, q, t0 + q, "pos", lat=53.5, lon=9.9, speed_kmh=40.0,
                                     course_deg=90.0, fix=1, sats=9, hdop=0.9, received_ms=t0))
    return out


async def one(url: str, rows: int, count: int, server: ProcStats,
              upsert: bool) -> tuple[float, float, float]:
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    kept = pg_readings._latest_args
    try:
        t0 = wall_ms()
        batches = [transaction(rows, k, t0) for k in range(count + 1)]
        await store.write(batches[0], [])  # partitions, prepared statements
        if not upsert:
            pg_readings._latest_args = lambda readings: ([],) * 12
        s, c, w = server.cpu_s(), time.process_time(), time.perf_counter()
        for batch in batches[1:]:
            await store.write(batch, [])
        n = rows * count
        return ((server.cpu_s() - s) / n * 1e6, (time.process_time() - c) / n * 1e6,
                (time.perf_counter() - w) / count * 1e3)
    finally:
        pg_readings._latest_args = kept
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
                srv, cpu, wall = asyncio.run(one(url, a.rows, a.transactions, server, upsert))
                print(f"  {name:10s} server {srv:5.1f} µs  writer process {cpu:5.1f} µs  "
                      f"wall {wall:5.2f} ms per transaction", flush=True)


if __name__ == "__main__":
    main()
