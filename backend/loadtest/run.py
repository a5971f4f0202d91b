"""The load test's orchestration: store, credentials, gateway and client processes, figures.

`run(options)` creates a throw-away store (SQLite file, or a PostgreSQL / TimescaleDB server
from tests/pgfixture.py when run from the source tree, or any `postgresql://` URL), provisions
one credential per vehicle with the store, starts `gateways` real `python -m backend`
processes (one UDP port each; vehicle i talks to gateway i mod gateways, so a connection and
its migrations stay on one process), starts `workers` client processes, lets them run the mode
for `duration_s`, drains, and then checks the store against what the vehicles made: every
reading stored once, none lost, none duplicated. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.pki import generate
from backend.store import open_store

from .fleet import Histogram

REPO = Path(__file__).resolve().parents[2]
# Server settings for PostgreSQL runs: durable, as in production and bench/bench_store.py.
PG_DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
              "shared_buffers": "256MB", "max_wal_size": "2GB"}
READY_TIMEOUT_S = 60.0
# A connection takes a few ms of gateway CPU (TLS handshake); allow generously for the ramp
# (on a machine shared with other work, 200 handshakes took up to 40 s).
CONNECT_BUDGET_S_PER_VEHICLE = 0.25
PROVISION_CHUNK = 500
# The machine the projection is for: the project's 2-core VM (docs/benchmarks.md, Reach).
PROJECTION_CORES = 2.0


@dataclass
class Options:
    vehicles: int = 50
    rate_hz: float = 1.0
    duration_s: float = 10.0
    mode: str = "steady"          # steady | storm | churn | migrate (churn without disconnects)
    db: str = "sqlite"            # sqlite | postgres | timescale | postgresql://…
    workers: int = 2
    gateways: int = 1
    router: bool = False          # vehicles reach the gateways through `python -m backend router`
    send_interval_s: float = 1.0  # the agent's default live pacing
    outage_at_s: float = 2.0      # storm: when the outage starts (after go)
    outage_s: float = 5.0         # storm: how long every vehicle is offline
    churn_per_s: float = 0.05     # churn: per vehicle, chance per second of a disconnect/migrate
    drain_timeout_s: float = 60.0
    seed: int = 1
    log_dir: str = ""
    profile: bool = False         # py-spy the first gateway and client during the window


@dataclass
class Report:
    options: dict
    vehicles: int = 0
    connected: int = 0
    connect_s: float = 0.0
    made: int = 0
    acked: int = 0
    acked_per_s: float = 0.0
    ack_p50_ms: float | None = None
    ack_p95_ms: float | None = None
    ack_p99_ms: float | None = None
    live_p99_ms: float | None = None
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    unacked: int = 0              # made, not acknowledged and not stored when the run ended
    errors: dict = field(default_factory=dict)
    connects: int = 0
    migrations: int = 0
    reconnects: int = 0
    gateway_cpu_pct: float = 0.0      # of one core, summed over gateway processes
    gateway_cpu_ms_per_reading: float = 0.0  # gateway CPU time / readings acked in the window
    gateway_rss_mb: float = 0.0       # peak, summed over gateway processes
    gateway_kb_per_vehicle: float = 0.0
    client_cpu_pct: float = 0.0
    client_cpu_ms_per_reading: float = 0.0   # load generator CPU time / readings acked
    datagrams_in_per_reading: float = 0.0   # to the gateway, per reading acked in the window
    datagrams_out_per_reading: float = 0.0  # from the gateway
    storm: dict | None = None

    def projected_vehicles(self, cores: float, with_clients: bool = False) -> float:
        """Vehicles the measured CPU per reading allows on `cores` at the run's rate."""
        ms = self.gateway_cpu_ms_per_reading + (self.client_cpu_ms_per_reading
                                                if with_clients else 0.0)
        return cores * 1000 / ms / self.options["rate_hz"] if ms > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Exactly once for everything acknowledged, and the run drained."""
        return (self.lost == 0 and self.duplicated == 0 and self.unexpected == 0
                and self.unacked == 0)

    def verdict(self) -> str:
        if self.ok:
            return "OK: 0 lost, 0 duplicated"
        if self.lost or self.duplicated or self.unexpected:
            return (f"FAILED: lost {self.lost}, duplicated {self.duplicated}, "
                    f"unexpected {self.unexpected}")
        return f"NOT DRAINED: 0 lost, 0 duplicated, {self.unacked} still in the vehicles"

    def lines(self) -> list[str]:
        o = self.options
        out = [f"load test: {self.vehicles} vehicles × {o['rate_hz']} Hz, {o['mode']}, "
               f"{o['duration_s']:.0f} s, store {o['db'].split('://')[0]}, "
               f"{o['gateways']} gateway / {o['workers']} client processes",
               f"  connected          {self.connected} in {self.connect_s:.1f} s "
               f"({self.connects} connects, {self.reconnects} reconnects, "
               f"{self.migrations} migrations)",
               f"  acknowledged       {self.acked_per_s:,.0f} readings/s "
               f"(offered {self.vehicles * o['rate_hz']:,.0f}/s)",
               f"  ack latency        p50 {_ms(self.ack_p50_ms)}  p95 {_ms(self.ack_p95_ms)}  "
               f"p99 {_ms(self.ack_p99_ms)}  (live batches p99 {_ms(self.live_p99_ms)})",
               f"  gateway            {self.gateway_cpu_pct:.0f} % CPU, "
               f"{self.gateway_rss_mb:.0f} MB RSS, "
               f"{self.gateway_kb_per_vehicle:.1f} KB per connected vehicle, "
               f"{self.gateway_cpu_ms_per_reading:.2f} ms CPU per acked reading",
               f"  clients            {self.client_cpu_pct:.0f} % CPU, "
               f"{self.client_cpu_ms_per_reading:.2f} ms CPU per acked reading",
               f"  projection         {self.projected_vehicles(1.0):,.0f} vehicles at "
               f"{o['rate_hz']} Hz on one gateway core, "
               f"{self.projected_vehicles(PROJECTION_CORES, with_clients=True):,.0f} with the "
               f"load generator on the same {PROJECTION_CORES:.0f} cores "
               f"(CPU per reading only; not a measured rate)",
               f"  datagrams          {self.datagrams_in_per_reading:.2f} in + "
               f"{self.datagrams_out_per_reading:.2f} out at the gateway per acked reading",
               f"  errors             {self.errors or 'none'}",
               f"  store              {self.stored:,} stored of {self.made:,} made: "
               f"lost {self.lost}, duplicated {self.duplicated}, unexpected {self.unexpected}, "
               f"still in the vehicles (not drained) {self.unacked}"]
        if self.storm:
            s = self.storm
            out.append(f"  outage storm       backlog {s['backlog']:,} readings, drained in "
                       f"max {_s(s['drain_max_s'])} (p50 {_s(s['drain_p50_s'])}), "
                       f"{s['drained']} of {self.vehicles} vehicles")
        out.append("  RESULT " + self.verdict())
        return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class ProcStats:
    """CPU seconds and peak RSS of processes, from /proc (sampled by a thread)."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def cpu_s(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def rss_kb(self) -> int:
        total = 0
        for pid in self.pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak_kb = max(self.peak_kb, self.rss_kb())
            except (OSError, ValueError):
                return

    def stop(self) -> None:
        self._stop.set()


class Store:
    """The throw-away store of one run and its independent check (SQL, not the Store API)."""

    def __init__(self, kind: str, tmp: Path):
        self.kind = kind
        self.server = None
        if kind == "sqlite":
            self.url = f"sqlite://{tmp / 'fleet.db'}"
        elif kind in ("postgres", "timescale"):
            sys.path.insert(0, str(REPO / "tests"))
            from pgfixture import PgServer  # the source tree's throw-away server

            self.server = PgServer(dict(PG_DURABLE), timescale=kind == "timescale").start()
            self.url = self.server.create_database("fleet")
        else:
            self.url = kind

    async def provision(self, ids: list[str]) -> dict[str, str]:
        store = open_store(self.url)
        await store.open()
        tokens: dict[str, str] = {}
        try:
            for i in range(0, len(ids), PROVISION_CHUNK):
                chunk = ids[i:i + PROVISION_CHUNK]
                for vid, tok in zip(chunk, await asyncio.gather(
                        *(store.add_vehicle(v) for v in chunk)), strict=True):
                    tokens[vid] = tok
        finally:
            await store.close()
        return tokens

    def counts(self, prefix: str) -> dict[str, tuple[int, int, int]]:
        """vehicle → (rows, distinct seq, max seq) for the load test's vehicles."""
        sql = ("SELECT vehicle_id, count(*), count(DISTINCT seq), max(seq) FROM vehicle_telemetry "
               "WHERE vehicle_id LIKE {} GROUP BY vehicle_id")
        if self.url.startswith("sqlite://"):
            import sqlite3

            with sqlite3.connect(self.url.removeprefix("sqlite://"), timeout=30) as db:
                rows = db.execute(sql.format("?"), (prefix + "%",)).fetchall()
        else:
            import asyncpg

            async def fetch():
                conn = await asyncpg.connect(self.url)
                try:
                    return await conn.fetch(sql.format("$1"), prefix + "%")
                finally:
                    await conn.close()

            rows = asyncio.run(fetch())
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def seqs(self, vehicles: list[str]) -> dict[str, set[int]]:
        """The stored sequence numbers of a few vehicles (those with readings unacknowledged)."""
        if not vehicles:
            return {}
        out: dict[str, set[int]] = {v: set() for v in vehicles}
        if self.url.startswith("sqlite://"):
            import sqlite3

            with sqlite3.connect(self.url.removeprefix("sqlite://"), timeout=30) as db:
                for v in vehicles:
                    out[v] = {r[0] for r in db.execute(
                        "SELECT seq FROM vehicle_telemetry WHERE vehicle_id = ?", (v,))}
            return out
        import asyncpg

        async def fetch():
            conn = await asyncpg.connect(self.url)
            try:
                return await conn.fetch("SELECT vehicle_id, seq FROM vehicle_telemetry "
                                        "WHERE vehicle_id = ANY($1::text[])", vehicles)
            finally:
                await conn.close()

        for r in asyncio.run(fetch()):
            out[r[0]].add(r[1])
        return out

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def _start_gateway(store_url: str, certs: dict, port: int, tmp: Path, k: int,
                   log_dir: Path, router: list[str] = ()) -> subprocess.Popen:
    log = open(log_dir / f"gateway{k}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "--db", store_url, "--cert", certs["cert"],
         "--key", certs["key"], "--quic-host", "127.0.0.1", "--quic-port", str(port),
         "--http-port", str(_free_tcp_port()), "--ticket-file", str(tmp / f"tickets{k}.sqlite"),
         "--log-level", "WARNING", *router],
        stdout=subprocess.PIPE, stderr=log, env=_env(), cwd=REPO)
    return proc


def _profile(opts: Options, log_dir: Path, pids: dict[str, int]) -> list[subprocess.Popen]:
    """py-spy (sampling, from outside the process) over the measured window, as collapsed
    stacks (`NAME.py-spy.txt`: one line per stack with its sample count, for flame graphs or
    `python -m backend.loadtest.profile`)."""
    if not opts.profile:
        return []
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration",
                              str(max(1, int(opts.duration_s) - 1)), "--format", "raw",
                              "--rate", "50", "--nonblocking",
                              "-o", str(log_dir / f"{name}.py-spy.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def _readline(proc: subprocess.Popen, timeout: float, what: str) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline().decode()), daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise TimeoutError(f"{what}: nothing within {timeout:.0f} s")
    return box[0]


def run(opts: Options) -> Report:
    tmp = Path(tempfile.mkdtemp(prefix="fleet-loadtest-"))
    log_dir = Path(opts.log_dir) if opts.log_dir else tmp
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    store = Store(opts.db, tmp)
    try:
        return _run(opts, tmp, log_dir, store, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        store.close()


def _run(opts: Options, tmp: Path, log_dir: Path, store: Store,
         procs: list[subprocess.Popen]) -> Report:
    rng = random.Random(opts.seed)
    certs = generate(str(tmp / "pki"), ["localhost", "127.0.0.1"])
    prefix = f"lt{rng.randrange(10**6):06d}-"
    ids = [f"{prefix}{i:05d}" for i in range(opts.vehicles)]
    if opts.db not in ("sqlite", "postgres", "timescale"):  # an existing store: migrate first
        asyncio.run(store.provision([]))
    tokens = asyncio.run(store.provision(ids))
    ports = [_free_udp_port() for _ in range(opts.gateways)]
    node_args = [[] for _ in ports]
    if opts.router:  # docs/scaling.md: every vehicle talks to the router, it picks the node
        public, tunnel = _free_udp_port(), _free_udp_port()
        router = subprocess.Popen(
            [sys.executable, "-m", "backend", "router", "--listen", f"127.0.0.1:{public}",
             "--tunnel", f"127.0.0.1:{tunnel}"], stdout=subprocess.PIPE,
            stderr=open(log_dir / "router.log", "ab"), env=_env(), cwd=REPO)
        procs.append(router)
        if "router ready" not in _readline(router, READY_TIMEOUT_S, "router"):
            raise RuntimeError(f"the router did not start; see {log_dir}")
        node_args = [["--server-id", str(k + 1), "--router", f"127.0.0.1:{tunnel}"]
                     for k in range(len(ports))]
    gateways = [_start_gateway(store.url, certs, port, tmp, k, log_dir, node_args[k])
                for k, port in enumerate(ports)]
    procs += gateways
    for k, g in enumerate(gateways):
        line = _readline(g, READY_TIMEOUT_S, f"gateway {k}")
        if "backend ready" not in line:
            raise RuntimeError(f"gateway {k} did not start: {line!r}; see {log_dir}")
    gstats = ProcStats([g.pid for g in gateways])
    rss_idle_kb = gstats.rss_kb()
    workers = []
    for w in range(opts.workers):
        spec = {**asdict(opts), "ca": certs["ca"], "seed": opts.seed * 1000 + w,
                "vehicles": [{"id": v, "token": tokens[v], "epoch": rng.randrange(1, 2**62),
                              "server": ["127.0.0.1", public if opts.router
                                         else ports[i % opts.gateways]]}
                             for i, v in enumerate(ids) if i % opts.workers == w]}
        path = tmp / f"worker{w}.json"
        path.write_text(json.dumps(spec))
        log = open(log_dir / f"worker{w}.log", "ab")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "backend.loadtest.client", str(path)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, env=_env(), cwd=REPO))
    procs += workers
    t = time.monotonic()
    budget = 30 + opts.vehicles * CONNECT_BUDGET_S_PER_VEHICLE
    connected = 0
    for w, p in enumerate(workers):
        line = _readline(p, max(1.0, budget - (time.monotonic() - t)), f"client {w} connecting")
        if not line.startswith("connected"):
            raise RuntimeError(f"client {w} failed: {line!r}; see {log_dir}")
        connected += int(line.split()[1])
    connect_s = time.monotonic() - t
    rss_connected_kb = gstats.rss_kb()
    go = time.time() + 1.0
    for p in workers:
        p.stdin.write(f"go {go}\n".encode())
        p.stdin.flush()
    time.sleep(max(0.0, go - time.time()))
    cpu0, c0 = gstats.cpu_s(), time.monotonic()
    wstats = ProcStats([p.pid for p in workers])
    wcpu0 = wstats.cpu_s()
    spies = _profile(opts, log_dir, {"gateway0": gateways[0].pid, "client0": workers[0].pid})
    time.sleep(opts.duration_s)
    for spy in spies:
        spy.wait(30)
    gateway_cpu = (gstats.cpu_s() - cpu0) / (time.monotonic() - c0) * 100
    client_cpu = (wstats.cpu_s() - wcpu0) / (time.monotonic() - c0) * 100
    wstats.stop()
    results = []
    for w, p in enumerate(workers):
        line = _readline(p, opts.drain_timeout_s + 120, f"client {w} result")
        if not line.startswith("result "):
            raise RuntimeError(f"client {w} gave no result: {line!r}; see {log_dir}")
        results.append(json.loads(line[len("result "):]))
    gstats.stop()
    for g in gateways:
        g.send_signal(signal.SIGTERM)
    for g in gateways:
        try:
            g.wait(60)
        except subprocess.TimeoutExpired:
            g.kill()
    pending = [v for r in results for v, (_, _, u) in r["vehicles"].items() if u]
    rep = _report(opts, store.counts(prefix), store.seqs(pending), results, gstats,
                  rss_idle_kb, rss_connected_kb, connect_s, gateway_cpu, client_cpu)
    rep.connected = connected
    return rep


def _report(opts, counts, pending_seqs, results, gstats, rss_idle_kb, rss_connected_kb,
            connect_s, gateway_cpu, client_cpu) -> Report:
    rep = Report(options=asdict(opts), vehicles=opts.vehicles, connect_s=connect_s,
                 gateway_cpu_pct=gateway_cpu, client_cpu_pct=client_cpu,
                 gateway_rss_mb=gstats.peak_kb / 1024)
    lat, live = Histogram(), Histogram()
    made: dict[str, int] = {}
    unacked: dict[str, list[int]] = {}
    acked_window = dg_in = dg_out = 0
    for r in results:
        dg_in += r["datagrams"][0]
        dg_out += r["datagrams"][1]
        for vid, (m, a, u) in r["vehicles"].items():
            made[vid] = m
            unacked[vid] = u
            rep.made += m
            rep.acked += a
        acked_window += r["acked_in_window"]
        lat.merge(Histogram.from_json(r["latency"]))
        live.merge(Histogram.from_json(r["live_latency"]))
        for k, v in r["errors"].items():
            rep.errors[k] = rep.errors.get(k, 0) + v
        rep.connects += r["connects"]
        rep.migrations += r["migrations"]
        rep.reconnects += r["reconnects"]
        if r["storm"]:
            s = rep.storm or {"backlog": 0, "drained": 0, "drain_max_s": None, "drain_p50_s": None}
            s["backlog"] += r["storm"]["backlog"]
            s["drained"] += r["storm"]["drained"]
            for key in ("drain_max_s", "drain_p50_s"):
                vals = [x for x in (s[key], r["storm"][key]) if x is not None]
                s[key] = max(vals) if vals else None
            rep.storm = s
    rep.acked_per_s = acked_window / opts.duration_s
    rep.gateway_cpu_ms_per_reading = (gateway_cpu * 10 * opts.duration_s) / max(1, acked_window)
    rep.client_cpu_ms_per_reading = (client_cpu * 10 * opts.duration_s) / max(1, acked_window)
    rep.datagrams_in_per_reading = dg_in / max(1, acked_window)
    rep.datagrams_out_per_reading = dg_out / max(1, acked_window)
    rep.ack_p50_ms, rep.ack_p95_ms, rep.ack_p99_ms = (lat.percentile(p) for p in (50, 95, 99))
    rep.live_p99_ms = live.percentile(99)
    for vid, m in made.items():
        rows, distinct, top = counts.get(vid, (0, 0, 0))
        rep.stored += distinct
        rep.duplicated += rows - distinct
        rep.unexpected += max(0, (top or 0) - m)  # sequence numbers nobody made
        # lost: acknowledged (so gone from the vehicle) but not in the store; unacknowledged
        # readings the store does not hold yet are still the vehicle's, not lost
        u = unacked[vid]
        u_stored = len(set(u) & pending_seqs.get(vid, set())) if u else 0
        rep.lost += max(0, (m - len(u)) - (distinct - u_stored))
        rep.unacked += len(u) - u_stored
    rep.unexpected += sum(r for v, (r, _, _) in counts.items() if v not in made)
    # connected before any reading: what connection state costs, without queued data
    rep.gateway_kb_per_vehicle = max(0, rss_connected_kb - rss_idle_kb) / max(1, opts.vehicles)
    return rep
