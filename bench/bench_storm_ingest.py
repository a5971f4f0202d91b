"""Storm ingest against COPY, same server, same run: the writer's PostgreSQL path alone.

An outage storm: `--vehicles` vehicles come back at once and drain `--backlog` readings each
(the load tester's mix: positions and CAN snapshots) in batches of `--batch` readings, every
vehicle's batches in flight together, as the gateway enqueues them into its group-commit
writer (`BatchWriter.enqueue`, the gateway's call). A fraction `--resend` of the batches is
sent twice (an ack lost in the outage: the journal re-sends; exactly once means the repeat
stores nothing). The baseline: binary COPY of the same rows, prepared beforehand, straight
into `vehicle_telemetry` of a second database of the same schema on the same server, in
5,000-row transactions (no duplicate check possible). The two alternate `--rounds` times.

    .venv/bin/python bench/bench_storm_ingest.py [--flavour postgres|timescale]
        [--vehicles 100] [--backlog 300] [--batch 200] [--resend 0.1] [--rounds 2]

Reported per round: readings/s each way, the ratio, and this process's CPU per stored
reading on the writer's path (the gateway's event loop pays it during a drain).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pgfixture import PgServer  # noqa: E402

from backend.store.base import StoredReading  # noqa: E402
from backend.store.postgres import PostgresStore  # noqa: E402
from backend.writer import BatchWriter  # noqa: E402
from bench.pgcopy import DAY_MS, copy_record, dt, timed_copy  # noqa: E402
from geostream.clock import wall_ms  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402
from loadtest.store import PG_DURABLE  # noqa: E402


def storm_rows(vehicles: int, backlog: int, rate_hz: float = 10.0) -> list[list[StoredReading]]:
    """Each vehicle's backlog, oldest first, as the gateway stores it."""
    now = wall_ms()
    out = []
    for v in range(vehicles):
        sim = SimVehicle(f"st-{v:05d}", "", v + 1, rate_hz, 0.0, now - 60_000, seed=v)
        out.append([StoredReading.from_wire(sim.vehicle_id, sim.epoch, sim.wire_reading(q), now)
                    for q in range(1, backlog + 1)])
    return out


async def _opened(url: str) -> PostgresStore:
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    now = wall_ms()
    async with store._pool.acquire() as conn:
        await conn.execute("SELECT telemetry_ensure_partitions($1, $2)", dt(now - DAY_MS),
                           dt(now + DAY_MS))
    return store


async def copy_rate(url: str, records: list[tuple]) -> float:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE vehicle_telemetry")
        await conn.execute("CHECKPOINT")
        return await timed_copy(conn, records)
    finally:
        await conn.close()


async def storm_rate(store: PostgresStore, backlogs: list[list[StoredReading]], batch: int,
                     resend: float, seed: int) -> tuple[float, float, str]:
    """(readings/s, CPU µs per reading of this process, its transactions and how many rows
    went the checking way) for the storm through the writer."""
    async with store._pool.acquire() as conn:
        await conn.execute("TRUNCATE vehicle_telemetry, last_position, last_can")
        await conn.execute("CHECKPOINT")
    rng = random.Random(seed)
    batches = []
    for rows in backlogs:
        for i in range(0, len(rows), batch):
            batches.append(rows[i:i + batch])
            if rng.random() < resend:
                batches.append(rows[i:i + batch])
    rng.shuffle(batches)  # vehicles' batches interleave as they arrive
    writer = BatchWriter(store)
    writer.start()
    loop = asyncio.get_running_loop()
    left = len(batches)
    done = loop.create_future()

    def settled(error: BaseException | None) -> None:
        nonlocal left
        assert error is None, error
        left -= 1
        if not left:
            done.set_result(None)

    cpu0, t0 = time.process_time(), time.perf_counter()
    for b in batches:
        writer.enqueue(b, [], settled)
    await done
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await writer.stop()
    total = sum(len(rows) for rows in backlogs)
    async with store._pool.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM vehicle_telemetry")
    assert stored == total, (stored, total)
    return (total / elapsed, cpu / total * 1e6,
            f"{writer.stats.transactions} transactions, {store.checked_rows:,} rows checked, "
            f"{store.copy_conflicts} COPY conflicts")


async def bench(server: PgServer, a) -> list[str]:
    backlogs = storm_rows(a.vehicles, a.backlog)
    records = [copy_record(r) for rows in backlogs for r in rows]
    storm_url, copy_url = server.create_database("storm"), server.create_database("copy")
    await (await _opened(copy_url)).close()
    lines = []
    for n in range(a.rounds):
        copy = await copy_rate(copy_url, records)
        store = await _opened(storm_url)  # a fresh gateway process: it knows of no commit
        try:
            storm, cpu, checked = await storm_rate(store, backlogs, a.batch, a.resend, seed=n)
            lines.append(f"round {n + 1}: storm through the writer {storm:,.0f}/s "
                         f"({cpu:.1f} µs CPU per reading here, {checked}), "
                         f"COPY {copy:,.0f}/s, "
                         f"ratio {storm / copy:.2f}×")
            print(lines[-1], flush=True)
        finally:
            await store.close()
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flavour", choices=("postgres", "timescale"), default="postgres")
    ap.add_argument("--vehicles", type=int, default=100)
    ap.add_argument("--backlog", type=int, default=300, help="readings per vehicle")
    ap.add_argument("--batch", type=int, default=200, help="readings per batch")
    ap.add_argument("--resend", type=float, default=0.1, help="share of batches sent twice")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    print(f"{a.flavour}: {a.vehicles} vehicles × {a.backlog} readings in batches of {a.batch}, "
          f"{a.resend:.0%} re-sent; load average {os.getloadavg()[0]:.1f}", flush=True)
    with PgServer(dict(PG_DURABLE), timescale=a.flavour == "timescale") as server:
        asyncio.run(bench(server, a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
