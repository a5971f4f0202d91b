"""`python -m loadtest --vehicles N --rate R --duration S [--mode steady|storm|churn]`.

Prints readings acknowledged per second, ack latency p50/p95/p99, connections and errors, the
gateway's CPU and RSS, and the store check (lost / duplicated); exit status 1 unless the store
holds every reading exactly once. docs/benchmarks.md lists the figures and commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from backend.cli_secrets import argv_secret_warnings
from geostream.quic import LIBRARIES

from .run import Options, run


def main(argv: list[str] | None = None) -> int:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vehicles", type=int, default=d.vehicles)
    p.add_argument("--rate", type=float, default=d.rate_hz, help="readings/s per vehicle")
    p.add_argument("--duration", type=float, default=d.duration_s, help="measured seconds")
    p.add_argument("--mode", choices=("steady", "storm", "churn", "migrate"), default=d.mode)
    p.add_argument("--db", default=d.db,
                   help="sqlite | postgres | timescale (throw-away stores) | postgresql://URL")
    p.add_argument("--workers", type=int, default=d.workers, help="client processes")
    p.add_argument("--gateways", type=int, default=d.gateways,
                   help="gateway processes, one UDP port each")
    p.add_argument("--router", action="store_true",
                   help="put `python -m backend router` in front of the gateways (docs/scaling.md)")
    p.add_argument("--reuseport", type=int, default=d.reuseport, metavar="N",
                   help="one `python -m backend --reuseport N` (N workers on one UDP port, "
                        "steered by connection ID; PostgreSQL; starts a nats-server)")
    p.add_argument("--nats", action="store_true",
                   help="start a nats-server and give every gateway --nats-url")
    p.add_argument("--send-interval", type=float, default=d.send_interval_s,
                   help="seconds between a vehicle's live batches (agent default 1)")
    p.add_argument("--outage-at", type=float, default=d.outage_at_s, help="storm: start (s)")
    p.add_argument("--outage", type=float, default=d.outage_s, help="storm: length (s)")
    p.add_argument("--churn", type=float, default=d.churn_per_s,
                   help="churn: disconnect-or-migrate chance per vehicle per second")
    p.add_argument("--quic-clients", choices=LIBRARIES, default=d.quic_clients,
                   help="the simulated vehicles' QUIC library (default: $FLEET_QUIC_LIBRARY, "
                        "else the agent's default)")
    p.add_argument("--quic-gateway", choices=LIBRARIES, default=d.quic_gateway,
                   help="the gateways' QUIC library (default: $FLEET_QUIC_LIBRARY, else the "
                        "gateway's default)")
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--log-dir", default="", help="keep gateway and client logs here")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the first gateway and client process into --log-dir")
    a = p.parse_args(argv)
    for text in argv_secret_warnings(a.db, None):  # PGPASSWORD / ~/.pgpass instead
        print(f"loadtest: deprecated: {text}", file=sys.stderr)
    if a.profile and not a.log_dir:
        p.error("--profile needs --log-dir")
    if a.reuseport > 1 and (a.router or a.gateways != 1):
        p.error("--reuseport N is its own N gateway processes: without --router/--gateways")
    if a.mode == "storm" and a.outage_at + a.outage >= a.duration:
        p.error("storm: --outage-at + --outage must end before --duration")
    opts = Options(vehicles=a.vehicles, rate_hz=a.rate, duration_s=a.duration, mode=a.mode,
                   db=a.db, workers=a.workers, gateways=a.gateways, router=a.router,
                   reuseport=a.reuseport, nats=a.nats,
                   send_interval_s=a.send_interval, outage_at_s=a.outage_at,
                   outage_s=a.outage, churn_per_s=a.churn, drain_timeout_s=a.drain_timeout,
                   seed=a.seed, log_dir=a.log_dir, profile=a.profile,
                   quic_clients=a.quic_clients, quic_gateway=a.quic_gateway)
    rep = run(opts)
    print("\n".join(rep.lines()), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({**asdict(rep), "ok": rep.ok}, f, indent=1)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
