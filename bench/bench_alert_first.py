"""A fleet's first alert evaluations on PostgreSQL: together against one vehicle at a time.

    .venv/bin/python bench/bench_alert_first.py [--vehicles 1000] [--rounds 2] [--batches 200,1]

Every vehicle of a tick that the alert engine has no state for (a fleet connecting, a restart)
is evaluated from the store: its newest checkpoint, its readings after it, the alerts in its
window, and a save. The engine loads that for up to REPLAY_BATCH vehicles at once, one query
per kind (backend/alerts/engine.py `_evaluate_many`); the baseline is the same engine with
REPLAY_BATCH = 1, four store calls per vehicle one after another, as before. Each round: a
fresh database on a throw-away durable server (the load tester's settings), `--vehicles`
vehicles with 5 stored positions each, then one `on_committed` of their newest readings.
Reported per vehicle: wall time, this process's CPU and the PostgreSQL server's CPU (its
postmaster's tree), alternating the two ways `--rounds` times so a busy machine slows both.
`--batches` compares other group sizes (e.g. `--vehicles 10000 --batches 100,200,1000`).

    .venv/bin/python bench/bench_alert_first.py --storm [--vehicles 100] [--backlog 300]
        [--batch 200] [--rounds 2]

`--storm`: the first evaluations after bench_storm_ingest.py's storm (its rows: `--vehicles`
vehicles draining `--backlog` readings each in batches of `--batch`, shuffled), all stored,
then handed to `on_committed` in the gateway consumer's steps (ALERT_ROWS_PER_STEP rows, in
the batches' order), so a vehicle's first evaluation holds one of its batches and finds the
rest in the store. The PostgreSQL server's CPU per stored reading: the engine as it is (the
rows it holds are not read back), the same engine reading back every row after the base (as
before), and binary COPY of the same rows into an empty table of the same server (the storm
bench's baseline), alternating `--rounds` times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pgfixture import PgServer  # noqa: E402

from backend import gateway_ingest as engine_mod_ingest  # noqa: E402
from backend.alerts import engine as engine_mod  # noqa: E402
from backend.alerts.rules import parse_rules  # noqa: E402
from backend.store.base import StoredReading  # noqa: E402
from backend.store.postgres import PostgresStore  # noqa: E402
from bench.bench_storm_ingest import _opened, storm_rows  # noqa: E402
from bench.pgcopy import copy_record, timed_copy  # noqa: E402
from geostream.clock import wall_ms  # noqa: E402
from loadtest.report import ProcStats  # noqa: E402
from loadtest.store import PG_DURABLE  # noqa: E402

READINGS_EACH = 5


def readings(vehicles: int, t0: int) -> list[StoredReading]:
    return [StoredReading(f"v{v:05d}", 1, q, t0 + q * 1000, "pos", lat=53.5 + v * 1e-4,
                          lon=9.9, speed_kmh=40.0 + q, course_deg=90.0, fix=1, sats=9,
                          hdop=0.9, received_ms=t0 + q * 1000)
            for v in range(vehicles) for q in range(1, READINGS_EACH + 1)]


async def one(url: str, vehicles: int, batch: int, server: ProcStats) -> dict:
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    try:
        now = wall_ms()
        rows = readings(vehicles, now - 60_000)
        for i in range(0, len(rows), 5000):
            await store.write(rows[i:i + 5000], [])
        engine = engine_mod.AlertEngine(store, parse_rules({}))
        await engine.start(now)
        engine_mod.REPLAY_BATCH, kept = batch, engine_mod.REPLAY_BATCH
        try:
            t, cpu, srv = time.perf_counter(), time.process_time(), server.cpu_s()
            await engine.on_committed(rows, now)
            wall = time.perf_counter() - t
            cpu, srv = time.process_time() - cpu, server.cpu_s() - srv
        finally:
            engine_mod.REPLAY_BATCH = kept
        assert engine.stats["replays"] == vehicles and engine.stats["failures"] == 0
        return {"wall_ms": wall / vehicles * 1e3, "cpu_us": cpu / vehicles * 1e6,
                "server_us": srv / vehicles * 1e6}
    finally:
        await store.close()


async def _read_back_all(self, bases, fresh):
    """The engine's replay read before it left out the rows it holds: everything after the
    base from the store (the baseline of `--storm`)."""
    return await self.store.alert_readings_after(bases)


async def storm_first(url: str, backlogs: list[list[StoredReading]], batch: int,
                      read_back_all: bool, server: ProcStats, seed: int) -> dict:
    """The storm's rows stored, then evaluated as the gateway's consumer hands them over:
    the server's CPU and the rows read back per stored reading."""
    store = await _opened(url)  # a fresh database: the schema, and partitions around now
    try:
        rng = random.Random(seed)
        batches = [rows[i:i + batch] for rows in backlogs for i in range(0, len(rows), batch)]
        rng.shuffle(batches)
        rows = [r for b in batches for r in b]
        for i in range(0, len(rows), 5000):
            await store.write(rows[i:i + 5000], [])
        engine = engine_mod.AlertEngine(store, parse_rules({}))
        await engine.start(wall_ms())
        read = 0
        kept_reads = engine_mod.AlertEngine._replay_reads
        kept_read = store.alert_readings_after

        async def counted(asks, held=None):
            nonlocal read
            got = await kept_read(asks, held)
            read += sum(map(len, got.values()))
            return got

        store.alert_readings_after = counted  # type: ignore[method-assign]
        if read_back_all:
            engine_mod.AlertEngine._replay_reads = _read_back_all  # type: ignore[method-assign]
        try:
            srv, cpu = server.cpu_s(), time.process_time()
            step = engine_mod_ingest.ALERT_ROWS_PER_STEP
            for i in range(0, len(rows), step):
                await engine.on_committed(rows[i:i + step], wall_ms())
            srv, cpu = server.cpu_s() - srv, time.process_time() - cpu
        finally:
            engine_mod.AlertEngine._replay_reads = kept_reads  # type: ignore[method-assign]
        assert engine.stats["failures"] == 0
        assert engine.stats["readings_evaluated"] == len(rows), engine.stats
        return {"server_us": srv / len(rows) * 1e6, "cpu_us": cpu / len(rows) * 1e6,
                "read": read / len(rows), "replays": engine.stats["replays"]}
    finally:
        await store.close()


async def copy_server(url: str, records: list[tuple], server: ProcStats) -> float:
    """The server's CPU µs per row of the binary COPY (bench_storm_ingest.py's baseline)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE vehicle_telemetry")
        srv = server.cpu_s()
        await timed_copy(conn, records)
        return (server.cpu_s() - srv) / len(records) * 1e6
    finally:
        await conn.close()


async def _close(opening) -> None:
    await (await opening).close()


def storm(a) -> None:
    backlogs = storm_rows(a.vehicles, a.backlog)
    records = [copy_record(r) for rows in backlogs for r in rows]
    with PgServer(dict(PG_DURABLE)) as pg:
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        server = ProcStats([postmaster], sample_rss=False)
        copy_url = pg.create_database("copy")
        asyncio.run(_close(_opened(copy_url)))
        print(f"storm of {a.vehicles} vehicles × {a.backlog} readings (batches of {a.batch}), "
              f"first alert evaluations; PostgreSQL server CPU per stored reading; load "
              f"average {os.getloadavg()[0]:.1f}", flush=True)
        for r in range(a.rounds):
            copy = asyncio.run(copy_server(copy_url, records, server))
            held = asyncio.run(storm_first(pg.create_database(f"held{r}"), backlogs, a.batch,
                                           False, server, r))
            full = asyncio.run(storm_first(pg.create_database(f"all{r}"), backlogs, a.batch,
                                           True, server, r))
            print(f"  round {r + 1}: COPY {copy:5.1f} µs | first evaluations: holding "
                  f"{held['server_us']:5.1f} µs ({held['server_us'] / copy:.2f}× COPY, "
                  f"{held['read']:.2f} rows read back per row, gateway {held['cpu_us']:.0f} µs)"
                  f" | reading back all {full['server_us']:5.1f} µs "
                  f"({full['server_us'] / copy:.2f}× COPY, {full['read']:.2f} rows, gateway "
                  f"{full['cpu_us']:.0f} µs); replays {held['replays']} / {full['replays']}",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", default=f"{engine_mod.REPLAY_BATCH},1",
                    help="REPLAY_BATCH values to compare (1: one vehicle at a time)")
    ap.add_argument("--storm", action="store_true",
                    help="the first evaluations after bench_storm_ingest.py's storm, "
                         "against its COPY")
    ap.add_argument("--backlog", type=int, default=300, help="--storm: readings per vehicle")
    ap.add_argument("--batch", type=int, default=200, help="--storm: readings per batch")
    a = ap.parse_args()
    if a.storm:
        storm(a)
        return
    batches = [int(b) for b in a.batches.split(",")]
    with PgServer(dict(PG_DURABLE)) as pg:
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        server = ProcStats([postmaster], sample_rss=False)
        print(f"{a.vehicles} vehicles' first alert evaluation in one tick, per vehicle")
        for r in range(a.rounds):
            for batch in batches:
                name = "one by one" if batch == 1 else f"{batch} at once"
                url = pg.create_database(f"first{r}_{batch}")
                m = asyncio.run(one(url, a.vehicles, batch, server))
                print(f"  {name:13s} wall {m['wall_ms']:6.2f} ms  gateway CPU "
                      f"{m['cpu_us']:6.0f} µs  server CPU {m['server_us']:6.0f} µs", flush=True)


if __name__ == "__main__":
    main()
