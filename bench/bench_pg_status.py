"""Vehicles' status reports and hellos' pending-commands questions on PostgreSQL: the gateway
loop's CPU per call, shared statements against a statement per call.

    .venv/bin/python bench/bench_pg_status.py [--vehicles 2000] [--rounds 2]

Every vehicle reports its status every 30 s and its command list at every hello
(`save_vehicle_status`, `save_vehicle_commands`); 10,000 vehicles make ~333 reports a second
and 10,000 at once when a fleet reconnects. Each round: `--vehicles` reports at once (one
`asyncio.gather`, as the gateway's sessions make them) through the store (`CoalescedPuts`:
the reports put meanwhile share a statement), then the same reports as one statement each on
the store's query pool (the way before, the same SQL as the store ran then); then as many
`pending_commands` questions (every hello asks one; `Coalesced`) against a query each. Reported
per call: this process's CPU (the gateway loop's, where the store's query pool runs), wall time
and the PostgreSQL server's CPU (its postmaster's tree), on a throw-away durable server (the
load tester's settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pgfixture import PgServer  # noqa: E402

from backend.store.postgres import PostgresStore  # noqa: E402
from backend.store.postgres.db import MS  # noqa: E402
from loadtest.report import ProcStats  # noqa: E402
from loadtest.store import PG_DURABLE  # noqa: E402

STATUS = {"time": 1, "backlog": 0, "journal_bytes": 65536, "dropped": 0,
          "sources": {"gps": "fix", "can": "ok"}}
_ONE = (f"INSERT INTO vehicle_status (vehicle_id, time, status) VALUES ($1, "
        f"{MS.format('$2::bigint')}, $3::jsonb) ON CONFLICT (vehicle_id) "
        "DO UPDATE SET time = excluded.time, status = excluded.status")
_PENDING = ("SELECT id, vehicle_id, name, args, created_at, sent_count, last_sent_at, "
            "answered_at, ok, detail, result FROM commands WHERE vehicle_id = $1 "
            "AND answered_at IS NULL ORDER BY id")


async def one(url: str, vehicles: int, server: ProcStats) -> dict[str, tuple[float, ...]]:
    store = PostgresStore(url, maintain_every_s=0)
    await store.open()
    out = {}
    try:
        ways = {"status, shared": lambda v, t: store.save_vehicle_status(v, STATUS, t),
                "status, one each": lambda v, t: store._pool.execute(_ONE, v, t,
                                                                      json.dumps(STATUS)),
                "pending, shared": lambda v, t: store.pending_commands(v),
                "pending, one each": lambda v, t: store._pool.fetch(_PENDING, v)}
        for k, (name, save) in enumerate(ways.items()):
            t0 = 1_765_000_000_000 + k * 1000
            cpu, wall, srv = time.process_time(), time.perf_counter(), server.cpu_s()
            await asyncio.gather(*(save(f"v{i:05d}", t0) for i in range(vehicles)))
            out[name] = ((time.process_time() - cpu) / vehicles * 1e6,
                         (time.perf_counter() - wall) / vehicles * 1e6,
                         (server.cpu_s() - srv) / vehicles * 1e6)
        return out
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    with PgServer(dict(PG_DURABLE)) as pg:
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        server = ProcStats([postmaster], sample_rss=False)
        print(f"{a.vehicles} calls at once, per call:")
        for r in range(a.rounds):
            for name, (cpu, wall, srv) in asyncio.run(one(pg.create_database(f"s{r}"),
                                                          a.vehicles, server)).items():
                print(f"  {name:17s} gateway CPU {cpu:5.0f} µs  wall {wall:6.0f} µs  "
                      f"server CPU {srv:5.0f} µs", flush=True)


if __name__ == "__main__":
    main()
