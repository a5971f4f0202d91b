"""Database failover and the cost of synchronous commit, in one run (docs/benchmarks.md).

    .venv/bin/python bench/bench_failover.py [--vehicles 100] [--duration 20] [--rounds 2]

As root (network namespaces): brings up tests/pgha.py's cluster (etcd, a Patroni primary and
its synchronous standby, a PgBouncer on each node) and times that; then, on the same cluster,
alternates load-tester runs (100 vehicles at 1 Hz, two gateway processes) with the role's
`synchronous_commit` at `local` (asynchronous: the ack does not wait for the standby) and at
the cluster's `remote_apply` (the ack waits until the standby applied the commit), and prints
ack latency of each; last, one run with the primary's node killed mid-stream (gateway 1
through the PgBouncers this time): the gap without acknowledgements, Patroni's own promotion
time, and the store check (lost / duplicated).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from pgha import HaCluster  # noqa: E402

from loadtest.run import Options, run  # noqa: E402


def loadtest(ha: HaCluster, db: str, vehicles: int, duration: float, seed: int,
             pooled: bool, events=()):
    """One load-tester run (its own vehicle ids: `seed`); `pooled`: gateway 1 goes through
    the PgBouncers (their server connections keep the role settings they started with, so the
    commit comparison runs use direct connections only)."""
    direct = ha.url(db)
    dbs = (direct, ha.url(db, pooled=True)) if pooled else (direct,)
    opts = Options(vehicles=vehicles, rate_hz=1.0, duration_s=duration, db=direct, gateways=2,
                   gateway_db=dbs, drain_timeout_s=60, seed=seed)
    return ha.in_app(run, opts, list(events))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=100)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2, help="async/sync pairs")
    ap.add_argument("--kill-at", type=float, default=8.0)
    a = ap.parse_args()
    t = time.monotonic()
    with HaCluster() as ha:
        setup_s = time.monotonic() - t
        print(f"cluster up (etcd, Patroni primary + synchronous standby, 2 PgBouncers): "
              f"{setup_s:.1f} s")
        ha.psql("pg1", "CREATE DATABASE fleet")
        rows = {"local": [], "remote_apply": []}
        for r in range(a.rounds):
            for mode in ("local", "remote_apply"):
                ha.psql("pg1", f"ALTER ROLE fleet SET synchronous_commit = '{mode}'")
                rep = loadtest(ha, "fleet", a.vehicles, a.duration, seed=len(rows[mode]) * 2
                               + (mode == "local") + 10, pooled=False)
                rows[mode].append(rep)
                print(f"round {r + 1} synchronous_commit={mode}: ack p50 {rep.ack_p50_ms:.0f} "
                      f"p95 {rep.ack_p95_ms:.0f} p99 {rep.ack_p99_ms:.0f} ms, "
                      f"{rep.acked_per_s:.0f}/s, {rep.verdict()}", flush=True)
        ha.psql("pg1", "ALTER ROLE fleet RESET synchronous_commit")
        print("\n| commit | runs | ack p50 ms | ack p95 ms | ack p99 ms |")
        print("|---|---:|---:|---:|---:|")
        for mode, reps in rows.items():
            med = [statistics.median(getattr(x, f) for x in reps)
                   for f in ("ack_p50_ms", "ack_p95_ms", "ack_p99_ms")]
            each = "; ".join(f"{x.ack_p50_ms:.0f}/{x.ack_p95_ms:.0f}/{x.ack_p99_ms:.0f}"
                             for x in reps)
            print(f"| {mode} | {len(reps)} ({each}) | {med[0]:.0f} | {med[1]:.0f} | "
                  f"{med[2]:.0f} |")
        promoted: list[float] = []

        def kill() -> None:
            t0 = time.monotonic()
            ha.kill_node("pg1")
            ha.wait_for(lambda c: any(m["name"] == "pg2" and m["role"] == "leader"
                                      and m["state"] == "running" for m in c["members"]),
                        "the standby's promotion", 60)
            promoted.append(time.monotonic() - t0)

        rep = loadtest(ha, "fleet", a.vehicles, a.duration + 10, seed=1, pooled=True,
                       events=[(a.kill_at, kill)])
        print(f"\nfailover: primary's node killed at {a.kill_at:.0f} s; Patroni promoted the "
              f"standby {promoted[0]:.1f} s later; ack gap {rep.ack_gap_s:.1f} s; "
              f"ack p99 {rep.ack_p99_ms:.0f} ms; stored {rep.stored} of {rep.made}: "
              f"lost {rep.lost}, duplicated {rep.duplicated}, unacked {rep.unacked} "
              f"({rep.verdict()})")


if __name__ == "__main__":
    main()
