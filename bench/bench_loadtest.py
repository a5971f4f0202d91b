"""Load-tester benchmark: many vehicles against real gateway processes, and ingest vs COPY.

    .venv/bin/python bench/bench_loadtest.py            # bounded: about 6 minutes
    .venv/bin/python bench/bench_loadtest.py --only ladder   # the ladder rows (long)
    .venv/bin/python bench/bench_loadtest.py --only ingest   # only part 2 (about 3 minutes)

1. Steady fleets at 1 Hz on SQLite, PostgreSQL and TimescaleDB, an outage storm and churn
   (`python -m loadtest` with the same options): readings acked/s, ack p50/p99, gateway
   CPU and memory per connected vehicle, and the store check (0 lost / 0 duplicated).
2. End-to-end ingest (QUIC + CBOR + DEFLATE + gateway + writer + PostgreSQL/PostGIS with its
   indexes): a storm's backlog drained by many vehicles at once, against a direct COPY of as many
   rows of the same shape into the same schema on the same server, in the same run.
3. `--only ladder` (or `--ladder` with the rest): issue 29's rows, 1,000 / 3,000 / 10,000
   vehicles at 1 Hz and 20,000 at 0.2 Hz, on SQLite and PostgreSQL, each run to the end (a
   row that misses p99 < 500 ms still says how far it got): acked/s, ack p50/p99, the CPU of
   the gateway, the clients (also per vehicle-second), the store server and other processes,
   the machine's idle time and load, and the store check.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from pgfixture import PgServer  # noqa: E402

from backend.store.base import StoredReading  # noqa: E402
from backend.store.postgres import PostgresStore  # noqa: E402
from bench.pgcopy import DAY_MS, copy_record, dt, timed_copy  # noqa: E402
from geostream.clock import wall_ms  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402
from loadtest.report import ProcStats, Report, process_tree  # noqa: E402
from loadtest.run import Options, run  # noqa: E402
from loadtest.store import PG_DURABLE  # noqa: E402

P99_GOAL_MS = 500.0
INGEST_FLAVOURS = ("postgres", "timescale")
# (vehicles, readings/s each): issue 29's ladder; 20,000 at 0.2 Hz is seed 003's reach ratio
LADDER = ((1000, 1.0), (3000, 1.0), (10000, 1.0), (20000, 0.2))
LADDER_DBS = ("sqlite", "postgres")
LADDER_SECONDS = 30


def cmd(o: Options) -> str:
    parts = [f"--vehicles {o.vehicles}", f"--rate {o.rate_hz:g}", f"--duration {o.duration_s:g}",
             f"--mode {o.mode}", f"--db {o.db if '://' not in o.db else 'URL'}"]
    if o.mode == "storm":
        parts += [f"--outage-at {o.outage_at_s:g}", f"--outage {o.outage_s:g}"]
    if o.mode == "churn":
        parts.append(f"--churn {o.churn_per_s:g}")
    if o.gateways != 1:
        parts.append(f"--gateways {o.gateways}")
    if o.quic_gateway:
        parts.append(f"--quic-gateway {o.quic_gateway}")
    if o.quic_clients:
        parts.append(f"--quic-clients {o.quic_clients}")
    return "python -m loadtest " + " ".join(parts)


def row(name: str, o: Options, r: Report) -> str:
    check = r.verdict()
    return (f"| {name} | `{cmd(o)}` | {r.acked_per_s:,.0f}/s of {o.vehicles * o.rate_hz:,.0f} | "
            f"{_ms(r.ack_p50_ms)} / {_ms(r.ack_p99_ms)} | {r.gateway_cpu_pct:.0f} % | "
            f"{r.gateway_kb_per_vehicle:.0f} KB | {check} |")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


# --- ingest vs COPY ---------------------------------------------------------------------------


def same_rows(vehicles: int, rate_hz: float, seconds: float) -> list[tuple]:
    """Records of the shape the load test sends (positions and CAN snapshots), for COPY."""
    now = wall_ms()
    out = []
    for v in range(vehicles):
        sim = SimVehicle(f"copy-{v:05d}", "", v + 1, rate_hz, 0.0, now, seed=v)
        sim.make_due(seconds)
        for r in sim.pending_wire():
            out.append(copy_record(StoredReading.from_wire(sim.vehicle_id, sim.epoch, r, now)))
    return out


class CpuTimeline:
    """CPU seconds of the run's process trees sampled every `every_s` (a thread): the
    gateways and the load generator (this process's children, told apart by command line)
    and the PostgreSQL server (its postmaster's tree), so a window inside the run (the drain)
    gets its own CPU split."""

    GROUPS = (("gateway", "-m backend"), ("clients", "loadtest.client"))

    def __init__(self, postmaster: int, every_s: float = 0.1):
        self.postmaster = postmaster
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _sample(self) -> dict[str, float]:
        out = dict.fromkeys([g for g, _ in self.GROUPS], 0.0)
        for pid in process_tree([os.getpid()])[1:]:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            for group, marker in self.GROUPS:
                if marker in cmd:
                    out[group] += ProcStats([pid], tree=False, sample_rss=False).cpu_s()
        out["store server"] = ProcStats([self.postmaster], sample_rss=False).cpu_s()
        return out

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.samples.append((time.time(), self._sample()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds of each group from wall time t0 to t1 (linear between samples)."""
        times = [t for t, _ in self.samples]

        def at(t: float, group: str) -> float:
            i = min(max(bisect.bisect_left(times, t), 1), len(times) - 1)
            (ta, a), (tb, b) = self.samples[i - 1], self.samples[i]
            f = 0.0 if tb == ta else min(1.0, max(0.0, (t - ta) / (tb - ta)))
            return a[group] + f * (b[group] - a[group])

        return {g: at(t1, g) - at(t0, g) for g in self.samples[0][1]}


async def copy_rate(url: str, records: list[tuple], postmaster: int = 0) -> tuple[float, float,
                                                                                  float]:
    """(rows/s, this process's CPU µs per row, the server's CPU µs per row) of the COPY."""
    import asyncpg

    store = PostgresStore(url, maintain_every_s=0)
    await store.open()  # migrations
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        now = wall_ms()
        await conn.execute("SELECT telemetry_ensure_partitions($1, $2)", dt(now - DAY_MS),
                           dt(now + DAY_MS))
        server = ProcStats([postmaster], sample_rss=False) if postmaster else None
        cpu0, srv0 = time.process_time(), server.cpu_s() if server else 0.0
        rate = await timed_copy(conn, records)
        n = len(records)
        return (rate, (time.process_time() - cpu0) / n * 1e6,
                ((server.cpu_s() - srv0) / n * 1e6) if server else float("nan"))
    finally:
        await conn.close()


def ingest_vs_copy(flavour: str, vehicles: int, rate_hz: float, outage_s: float) -> str:
    """The drain against COPY, by wall clock (the issue's ratio) and by CPU per reading: the
    COPY's records are made before its clock starts, so like with like the drain's side is
    what the backend spends (gateway + PostgreSQL server), not the load generator making the
    readings on the same cores (shown apart)."""
    with PgServer(dict(PG_DURABLE), timescale=flavour == "timescale") as server:
        url = server.create_database("ingest")
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        o = Options(vehicles=vehicles, rate_hz=rate_hz, duration_s=outage_s + 20, mode="storm",
                    outage_at_s=1.0, outage_s=outage_s, db=url)
        timeline = CpuTimeline(postmaster)
        try:
            rep = run(o)
        finally:
            timeline.stop()
        storm = rep.storm or {}
        drain = storm.get("drain_max_s") or float("nan")
        backlog = storm.get("backlog", 0)
        e2e = backlog / drain
        # readings the backend took in the drain: the backlog and the live ones made meanwhile
        taken = backlog + vehicles * rate_hz * drain
        cpu = timeline.between(storm["back_wall"], storm["back_wall"] + drain)
        us = {g: c / taken * 1e6 for g, c in cpu.items()}
        copy, copy_client_us, copy_server_us = asyncio.run(copy_rate(
            server.create_database("copy"),
            same_rows(vehicles, rate_hz, backlog / vehicles / rate_hz), postmaster))
    check = rep.verdict()
    backend_us = us["gateway"] + us["store server"]
    copy_us = copy_client_us + copy_server_us
    return (f"| ingest, {flavour}: {backlog:,} backlog readings from {vehicles} "
            f"vehicles reconnecting at once ({rep.resumed} resumed, {rep.early_data} with "
            f"0-RTT) | `{cmd(o)}` | {e2e:,.0f}/s (drained in {drain:.1f} s; CPU per reading: "
            f"gateway {us['gateway']:.0f} µs, store server {us['store server']:.0f} µs, "
            f"load generator {us['clients']:.0f} µs) | COPY same rows: {copy:,.0f}/s (CPU per "
            f"row: client {copy_client_us:.0f} µs, server {copy_server_us:.0f} µs) | "
            f"**{e2e / copy:.2f}×** (CPU: {copy_us / backend_us:.2f}×) | {check} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=200, help="steady fleets")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--ladder", action="store_true", help="also the ladder rows (long)")
    ap.add_argument("--ladder-db", choices=LADDER_DBS, action="append",
                    help="ladder: only this store (repeatable; default both)")
    ap.add_argument("--quic-gateway", default="", help="ladder: the gateways' QUIC library")
    ap.add_argument("--quic-clients", default="", help="ladder: the vehicles' QUIC library")
    ap.add_argument("--json", help="write every report here")
    ap.add_argument("--only", choices=("fleet", "ingest", "ladder"), help="run only this part")
    ap.add_argument("--flavour", choices=INGEST_FLAVOURS, action="append",
                    help="ingest: only this database (repeatable; default both)")
    a = ap.parse_args()
    reports = {}
    failed = False
    if a.only in (None, "fleet"):
        failed |= fleet(a, reports)
    if a.only in (None, "ingest"):
        print("\n| ingest | command | end to end | baseline | ratio (wall; CPU: COPY's per "
              "row / the backend's per reading) | store |\n"
              "|---|---|---:|---:|---:|---|", flush=True)
        for flavour in a.flavour or INGEST_FLAVOURS:
            # live traffic (1,000/s) well below what the backend drains, so the drain is measured
            line = ingest_vs_copy(flavour, vehicles=100, rate_hz=10, outage_s=30)
            failed |= "OK" not in line
            print(line, flush=True)
    if a.ladder or a.only == "ladder":
        failed |= ladder(a, reports)
    if a.json:
        Path(a.json).write_text(json.dumps({k: v.__dict__ for k, v in reports.items()},
                                           indent=1, default=str))
    return 1 if failed else 0


def fleet(a, reports: dict) -> bool:
    """Part 1: the steady, storm and churn rows; True if a store check failed."""
    print("| run | command | acked | ack p50 / p99 | gateway CPU | gateway memory per vehicle "
          "| store |\n|---|---|---:|---:|---:|---:|---|", flush=True)
    runs = [(f"steady, {db}", Options(vehicles=a.vehicles, duration_s=a.duration, db=db))
            for db in ("sqlite", "postgres", "timescale")]
    runs.append(("outage storm, sqlite", Options(vehicles=100, rate_hz=10, duration_s=20,
                                                 mode="storm", outage_at_s=2, outage_s=10)))
    runs.append(("churn, sqlite", Options(vehicles=100, duration_s=a.duration, mode="churn",
                                          churn_per_s=0.1)))
    failed = False
    for name, o in runs:
        rep = run(o)
        reports[name] = rep
        failed |= not rep.ok
        print(row(name, o, rep), flush=True)
        if rep.storm:
            print(f"|  storm drain | | backlog {rep.storm['backlog']:,} | drained in "
                  f"{rep.storm['drain_max_s'] or float('nan'):.1f} s (p50 "
                  f"{rep.storm['drain_p50_s'] or float('nan'):.1f} s) | | | |", flush=True)
    return failed


def ladder(a, reports: dict) -> bool:
    """Part 3: the ladder rows, each to the end; True if a store check failed."""
    print("\n| row | command | acked | ack p50 / p99 | gateway CPU | clients CPU (per "
          "vehicle-second) | store server / other CPU, idle | load | store |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---|", flush=True)
    failed = False
    for db in a.ladder_db or LADDER_DBS:
        for n, rate in LADDER:
            o = Options(vehicles=n, rate_hz=rate, duration_s=LADDER_SECONDS, db=db,
                        quic_gateway=a.quic_gateway, quic_clients=a.quic_clients)
            try:
                r = run(o)
            except (RuntimeError, TimeoutError) as exc:  # did not connect: the row says so
                print(f"| {n:,} × {rate:g} Hz, {db} | `{cmd(o)}` | did not run: {exc} "
                      "| | | | | | |", flush=True)
                failed = True
                continue
            reports[f"ladder {n} {rate} {db}"] = r
            failed |= not r.ok
            goal = "" if (r.ack_p99_ms or 1e9) <= P99_GOAL_MS else " (p99 > 500 ms)"
            print(f"| {n:,} × {rate:g} Hz, {db} | `{cmd(o)}` | {r.acked_per_s:,.0f}/s of "
                  f"{n * rate:,.0f} | {_ms(r.ack_p50_ms)} / {_ms(r.ack_p99_ms)}{goal} | "
                  f"{r.gateway_cpu_pct:.0f} % ({r.gateway_cpu_ms_per_reading:.2f} ms/reading, "
                  f"{r.quic_gateway}) | {r.client_cpu_pct:.0f} % ({r.client_us_per_vehicle_s:.0f}"
                  f" µs, {r.quic_clients}) | {r.store_cpu_pct:.0f} % / {r.other_cpu_pct:.0f} %, "
                  f"{r.machine_idle_pct:.0f} % idle | {r.load_1m:.1f} | {r.verdict()} |",
                  flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
