"""The gateway's CPU per reading at 1 Hz on SQLite against PostgreSQL, same run, no sockets.

    .venv/bin/python bench/bench_store_path.py [--vehicles 400] [--seconds 6] [--rounds 2]
        [--quic qh3]

The gateway round of bench_gateway_path (bench/gateway_round.py: sans-IO QUIC clients, the real
UDP edge, sessions, writer, alert engine, hub; one reading per vehicle per second at its own
phase), once with its SQLite store (a temporary file, durable commits; the store thread's CPU is
part of the process's) and once with a PostgreSQL store on a throw-away durable server
(tests/pgfixture.py, the load tester's settings), alternating `--rounds` times so a busy machine
slows both alike. Per acked reading: the gateway process's CPU (clients' calls excluded), the
PostgreSQL server's CPU (its postmaster's process tree: the backends, WAL writer, checkpointer)
and their sum, the store's whole cost on the reading's path. Answers "where is PostgreSQL ingest
slower than SQLite per reading" without the machine's scheduler in the figure, which the ladder
rows (`python -m loadtest … --db sqlite|postgres`) on a shared machine cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pgfixture import PgServer  # noqa: E402

from backend.pki import generate  # noqa: E402
from backend.store.postgres import PostgresStore  # noqa: E402
from bench import gateway_round as gr  # noqa: E402
from geostream.quic import GATEWAY_DEFAULT_LIBRARY, library  # noqa: E402
from loadtest.report import ProcStats  # noqa: E402
from loadtest.store import PG_DURABLE  # noqa: E402

# Seconds of traffic at most before the measured ones, until the alert replays are done.
WARMUP_MAX_S = 60


async def _round(run: gr.Run, tmp: Path, seconds: int, server: ProcStats | None) -> dict:
    await run.setup(tmp)
    # every vehicle's first alert evaluation replays from the store (four queries): on
    # PostgreSQL they outlast the round's own warm-up and would be measured as ingest
    for _ in range(WARMUP_MAX_S):
        if run.alerts.stats["replays"] >= run.n and run.gateway.ingest._alert_task is None:
            break
        await run._drive(1)
    s0 = server.cpu_s() if server else 0.0
    result = await run.measure(seconds, warmup=1)
    result["replays"] = run.alerts.stats["replays"]
    result["server_ms"] = ((server.cpu_s() - s0) * 1000 / max(1, result["acked"])
                           if server else 0.0)
    await run.close()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=400)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quic", default=GATEWAY_DEFAULT_LIBRARY,
                    help="the QUIC library (default: a single gateway process's)")
    a = ap.parse_args()
    lib = library(a.quic)
    rows = []
    with tempfile.TemporaryDirectory() as d, PgServer(dict(PG_DURABLE)) as pg:
        tmp = Path(d)
        certs = generate(str(tmp / "pki"), ["localhost", "127.0.0.1"])
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        server = ProcStats([postmaster], sample_rss=False)
        for i in range(a.rounds):
            sqlite = asyncio.run(_round(gr.Run(lib, a.vehicles, certs, False, None), tmp,
                                        a.seconds, None))
            url = pg.create_database(f"path{i}")
            pg_run = gr.Run(lib, a.vehicles, certs, False, None, open_store=lambda _tmp, u=url:
                            PostgresStore(u, maintain_every_s=0))
            postgres = asyncio.run(_round(pg_run, tmp, a.seconds, server))
            rows.append((sqlite, postgres))
    print(f"{a.vehicles} vehicles × 1 Hz for {a.seconds} s, {lib.NAME}, no sockets; CPU per "
          f"acked reading (gateway: its process less the clients' calls)")
    for sqlite, postgres in rows:
        total = postgres["gateway_ms"] + postgres["server_ms"]
        print(f"  SQLite: gateway {sqlite['gateway_ms'] * 1000:4.0f} µs (store thread "
              f"{sqlite['store_ms'] * 1000:3.0f})   PostgreSQL: gateway "
              f"{postgres['gateway_ms'] * 1000:4.0f} µs + server "
              f"{postgres['server_ms'] * 1000:3.0f} µs = {total * 1000:4.0f} µs   "
              f"ratio PostgreSQL / SQLite: gateway "
              f"{postgres['gateway_ms'] / sqlite['gateway_ms']:.2f}×, with the server "
              f"{total / sqlite['gateway_ms']:.2f}×   acked {sqlite['acked']} / "
              f"{postgres['acked']}, alert replays {sqlite['replays']} / {postgres['replays']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
