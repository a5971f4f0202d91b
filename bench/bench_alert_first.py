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

from backend.alerts import engine as engine_mod  # noqa: E402
from backend.alerts.rules import parse_rules  # noqa: E402
from backend.store.base import StoredReading  # noqa: E402
from backend.store.postgres import PostgresStore  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", default=f"{engine_mod.REPLAY_BATCH},1",
                    help="REPLAY_BATCH values to compare (1: one vehicle at a time)")
    a = ap.parse_args()
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
