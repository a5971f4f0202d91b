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
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from backend.pki import generate
from geostream.quic import AGENT_DEFAULT_LIBRARY, gateway_library_name, library_name

from .client import ACK_TICK_S
from .fleet import Histogram
from .report import (
    MachineCpu,
    ProcStats,
    Report,
    ack_gap_s,
    drain_summary,
    memory_walk_ns,
    split_cpu,
    yardstick_ms,
)
from .store import ThrowawayStore

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60.0
# A connection takes a few ms of gateway CPU (TLS handshake); allow generously for the ramp
# (on a machine shared with other work, 200 handshakes took up to 40 s).
CONNECT_BUDGET_S_PER_VEHICLE = 0.25


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
    reuseport: int = 0            # N > 1: `python -m backend --reuseport N`, one port, N workers
    nats: bool = False            # a nats-server for the gateways' fan-out (reuseport needs it)
    send_interval_s: float = 1.0  # the agent's default live pacing
    outage_at_s: float = 2.0      # storm: when the outage starts (after go)
    outage_s: float = 5.0         # storm: how long every vehicle is offline
    churn_per_s: float = 0.05     # churn: per vehicle, chance per second of a disconnect/migrate
    drain_timeout_s: float = 60.0
    seed: int = 1
    log_dir: str = ""
    profile: bool = False         # py-spy the first gateway and client during the window
    gateway_db: tuple[str, ...] = ()  # gateway k's store URL: gateway_db[k % len] (else `db`)
    gateway_nats: tuple[str, ...] = ()  # gateway k's --nats-url: gateway_nats[k % len] (else none)
    # QUIC library per side (geostream/quic/): "" is $FLEET_QUIC_LIBRARY, else the side's
    # default (the gateway's, and the agent's for the simulated vehicles)
    quic_clients: str = ""
    quic_gateway: str = ""
    # the checkout whose `backend` the gateways run ("" is this one; the clients are always
    # this one's): bench/bench_gateway_process.py's baseline tree
    gateway_tree: str = ""


def _ready_ports(line: str) -> list[int]:
    """The ports a ready line names: every server here binds port 0 (the kernel's choice), so
    only the process itself knows them."""
    return [int(p) for p in re.findall(r":(\d+)\b", line)]


def _env(tree: Path = REPO) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start_gateway(store_url: str, certs: dict, tmp: Path, k: int,
                   log_dir: Path, router: list[str] = (), quic: str = "",
                   tree: Path = REPO) -> subprocess.Popen:
    log = open(log_dir / f"gateway{k}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", *(["--quic-library", quic] if quic else []),
         "--db", store_url, "--cert", certs["cert"],
         "--key", certs["key"], "--quic-host", "127.0.0.1", "--quic-port", "0",
         "--http-port", "0", "--ticket-file", str(tmp / f"tickets{k}.sqlite"),
         "--log-level", "WARNING", *router],
        stdout=subprocess.PIPE, stderr=log, env=_env(tree), cwd=tree)
    return proc


def _profile(opts: Options, log_dir: Path, pids: dict[str, int]) -> list[subprocess.Popen]:
    """py-spy (sampling, from outside the process) over the measured window, as collapsed
    stacks (`NAME.py-spy.txt`: one line per stack with its sample count, for flame graphs or
    `python -m loadtest.profile`)."""
    if not opts.profile:
        return []
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration",
                              str(max(1, int(opts.duration_s) - 1)), "--format", "raw",
                              "--rate", "100", "--nonblocking", "--gil",  # on-CPU Python only
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


def run(opts: Options, events: list[tuple[float, object]] = ()) -> Report:
    """`events`: (seconds after go, callable) run on their own thread at that time in the
    window (a test killing a database node mid-stream); their exceptions fail the run."""
    tmp = Path(tempfile.mkdtemp(prefix="fleet-loadtest-"))
    log_dir = Path(opts.log_dir) if opts.log_dir else tmp
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    store = ThrowawayStore(opts.db, tmp)
    nats = None
    ok = False
    try:
        if (opts.nats or opts.reuseport > 1) and not opts.gateway_nats:
            from tests.system.cluster.natsfixture import NatsServer  # the source tree's

            nats = NatsServer().start()
            opts = replace(opts, gateway_nats=(nats.url,))
        report = _run(opts, tmp, log_dir, store, procs, list(events))
        ok = True
        return report
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if nats is not None:
            nats.close()
        store.close()
        # the run's files (store, certificates, specs; the logs unless --log-dir) go, unless
        # it failed: then the logs are what tells why
        if ok or opts.log_dir:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(opts: Options, tmp: Path, log_dir: Path, store: ThrowawayStore,
         procs: list[subprocess.Popen], events: list) -> Report:
    rng = random.Random(opts.seed)
    certs = generate(str(tmp / "pki"), ["localhost", "127.0.0.1"])
    prefix = f"lt{rng.randrange(10**6):06d}-"
    ids = [f"{prefix}{i:05d}" for i in range(opts.vehicles)]
    if opts.db not in ("sqlite", "postgres", "timescale"):  # an existing store: migrate first
        asyncio.run(store.provision([]))
    tokens = asyncio.run(store.provision(ids))
    node_args = [[] for _ in range(opts.gateways)]
    public = 0
    if opts.router:  # docs/scaling.md: every vehicle talks to the router, it picks the node
        from backend.cluster.tunnel import write_key

        key_file = str(tmp / "cluster.key")
        write_key(key_file)
        router = subprocess.Popen(
            [sys.executable, "-m", "backend", "--cluster-key-file", key_file, "router",
             "--listen", "127.0.0.1:0", "--tunnel", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=open(log_dir / "router.log", "ab"), env=_env(), cwd=REPO)
        procs.append(router)
        line = _readline(router, READY_TIMEOUT_S, "router")
        if "router ready" not in line:
            raise RuntimeError(f"the router did not start; see {log_dir}")
        public, tunnel = _ready_ports(line)
        node_args = [["--server-id", str(k + 1), "--router", f"127.0.0.1:{tunnel}",
                      "--cluster-key-file", key_file] for k in range(opts.gateways)]
    dbs = list(opts.gateway_db) or [store.url]
    nats = [["--nats-url", u] for u in opts.gateway_nats] or [[]]
    if opts.reuseport > 1:
        gateways, ports, gpids = _start_reuseport(opts, dbs[0], certs, log_dir, nats[0], procs)
    else:
        gateways = [_start_gateway(dbs[k % len(dbs)], certs, tmp, k, log_dir,
                                   node_args[k] + nats[k % len(nats)], opts.quic_gateway,
                                   Path(opts.gateway_tree or REPO))
                    for k in range(opts.gateways)]
        procs += gateways
        ports = []
        for k, g in enumerate(gateways):
            line = _readline(g, READY_TIMEOUT_S, f"gateway {k}")
            if "backend ready" not in line:
                raise RuntimeError(f"gateway {k} did not start: {line!r}; see {log_dir}")
            ports.append(_ready_ports(line)[-1])  # "… gateway udp 127.0.0.1:PORT"
        gpids = [g.pid for g in gateways]
    gstats = ProcStats(gpids)
    # the router is a process of the serving side too: its CPU is reported apart
    rstats = ProcStats([procs[0].pid]) if opts.router else None
    rss_idle_kb = gstats.rss_kb()
    workers = []
    for w in range(opts.workers):
        spec = {**asdict(opts), "ca": certs["ca"], "seed": opts.seed * 1000 + w,
                "quic_library": opts.quic_clients,
                "vehicles": [{"id": v, "token": tokens[v], "epoch": rng.randrange(1, 2**62),
                              "server": ["127.0.0.1", public if opts.router
                                         else ports[i % opts.gateways]]}
                             for i, v in enumerate(ids) if i % opts.workers == w]}
        path = tmp / f"worker{w}.json"
        path.write_text(json.dumps(spec))
        log = open(log_dir / f"worker{w}.log", "ab")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "loadtest.client", str(path)], stdin=subprocess.PIPE,
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
    yardstick = yardstick_ms()  # the machine, just before the run
    memory_ns = memory_walk_ns()
    go = time.time() + 1.0
    for p in workers:
        p.stdin.write(f"go {go}\n".encode())
        p.stdin.flush()
    time.sleep(max(0.0, go - time.time()))
    # the window's CPU: the gateways' process trees, the router's, the clients', the store
    # server's tree (PostgreSQL; SQLite is inside the gateway), the whole machine's
    wstats = ProcStats([p.pid for p in workers], sample_rss=False)
    spid = store.server_pid()
    sstats = ProcStats([spid] if spid else [], sample_rss=False)
    machine = MachineCpu()
    gtimes0, wtimes0 = gstats.cpu_times(), wstats.cpu_times()
    cpu0, wcpu0, scpu0, c0 = sum(gtimes0), sum(wtimes0), sstats.cpu_s(), time.monotonic()
    rcpu0 = rstats.cpu_s() if rstats else 0.0
    spies = _profile(opts, log_dir, {"gateway0": gpids[-1], "client0": workers[0].pid})
    fired = [_at(go + at, fn) for at, fn in events]
    time.sleep(max(0.0, go + opts.duration_s - time.time()))
    for f in fired:
        f.join()
        if f.error is not None:
            raise f.error
    for spy in spies:
        spy.wait(30)
    idle_pct, busy_pct = machine.idle_and_busy()
    window = time.monotonic() - c0
    gtimes, wtimes = gstats.cpu_times(), wstats.cpu_times()
    gateway_cpu = (sum(gtimes) - cpu0) / window * 100
    client_cpu = (sum(wtimes) - wcpu0) / window * 100
    store_cpu = (sstats.cpu_s() - scpu0) / window * 100
    router_cpu = (rstats.cpu_s() - rcpu0) / window * 100 if rstats else None
    wstats.stop()
    sstats.stop()
    results = []
    for w, p in enumerate(workers):
        line = _readline(p, opts.drain_timeout_s + 120, f"client {w} result")
        if not line.startswith("result "):
            raise RuntimeError(f"client {w} gave no result: {line!r}; see {log_dir}")
        results.append(json.loads(line[len("result "):]))
    gstats.stop()
    if rstats:
        rstats.stop()
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
    rep.yardstick_ms = yardstick
    rep.memory_ns = memory_ns
    rep.gateway_user_pct, rep.gateway_sys_pct = (
        (now - then) / window * 100 for now, then in zip(gtimes, gtimes0, strict=True))
    rep.client_user_pct, rep.client_sys_pct = (
        (now - then) / window * 100 for now, then in zip(wtimes, wtimes0, strict=True))
    rep.drain_max_s, rep.drain_p99_s, rep.undrained_vehicles, rep.undrained_silent_max_s = (
        drain_summary([s for r in results for s in r.get("drain", {}).get("drained_s", ())],
                      [s for r in results for s in r.get("drain", {}).get("silent_s", ())]))
    for r in results:
        for kind, n in r.get("undrained", {}).items():
            rep.undrained_kinds[kind] = rep.undrained_kinds.get(kind, 0) + n
        if (oldest := r.get("unacked_oldest_s")) is not None:
            rep.unacked_oldest_s = max(oldest, rep.unacked_oldest_s or 0.0)
    rep.router_cpu_pct = router_cpu
    if opts.reuseport > 1:
        rep.relay_hops_per_reading = relayed_out(log_dir / "gateway0.log",
                                                 opts.reuseport) / max(1, rep.acked)
    rep.loop_stalls = stall_summary(log_dir / "gateway0.log")
    rep.edge_totals = edge_totals(log_dir / "gateway0.log")
    rep.machine_cores, rep.load_1m, rep.machine_idle_pct = machine.cores, machine.load_1m, idle_pct
    rep.store_cpu_pct = store_cpu
    rep.other_cpu_pct = split_cpu(busy_pct, gateway_cpu, client_cpu, store_cpu, router_cpu or 0.0)
    rep.quic_clients = library_name(opts.quic_clients or None, AGENT_DEFAULT_LIBRARY)
    rep.quic_gateway = gateway_library_name(opts.quic_gateway or None,
                                            opts.router or opts.reuseport > 1,
                                            relayed=True)
    rep.client_us_per_vehicle_s = client_cpu * 10_000 / max(1, opts.vehicles)
    ticks = {t for r in results for t in r["ack_ticks"]}
    rep.ack_gap_s = ack_gap_s(ticks, int(opts.duration_s / ACK_TICK_S), ACK_TICK_S)
    return rep


def _start_reuseport(opts: Options, db: str, certs: dict, log_dir: Path, nats: list[str],
                     procs: list[subprocess.Popen]
                     ) -> tuple[list[subprocess.Popen], list[int], list[int]]:
    """`python -m backend --reuseport N` (docs/scaling.md §4): one supervisor, N workers on
    one UDP port → ([supervisor], [port], the workers' pids and the supervisor's)."""
    sup = subprocess.Popen(
        [sys.executable, "-m", "backend", "--reuseport", str(opts.reuseport), "--db", db,
         "--cert", certs["cert"], "--key", certs["key"],
         *(["--quic-library", opts.quic_gateway] if opts.quic_gateway else []),
         "--quic-host", "127.0.0.1", "--quic-port", "0", "--http-host", "127.0.0.1",
         "--http-port", "0", "--log-level", "WARNING", *nats],
        stdout=subprocess.PIPE, stderr=open(log_dir / "gateway0.log", "ab"), env=_env(),
        cwd=REPO)
    procs.append(sup)
    line = _readline(sup, READY_TIMEOUT_S, "reuseport supervisor")
    if "supervisor ready" not in line:
        raise RuntimeError(f"the supervisor did not start: {line!r}; see {log_dir}")
    port = _ready_ports(f":{line.split()[-1]}")[0]  # "… on udp port PORT"
    for k in range(opts.reuseport):  # the workers print on the supervisor's stdout
        line = _readline(sup, READY_TIMEOUT_S, f"reuseport worker {k}")
        if "backend ready" not in line:
            raise RuntimeError(f"a worker did not start: {line!r}; see {log_dir}")
    return [sup], [port], [sup.pid, *_children(sup.pid)]


def relayed_out(log: Path, workers: int) -> int:
    """The datagrams the `--reuseport` workers relayed to each other: the last `workers`
    totals they wrote to their log at stop (backend/cluster/relay_edge.py)."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines()
                 if ln.startswith("cid relay of worker ")][-workers:]
    except OSError:
        return 0
    return sum(int(m.group(1)) for ln in lines if (m := re.search(r"relayed_out=(\d+)", ln)))


def stall_summary(log: Path) -> str:
    """The first gateway's event-loop stalls over its whole run, connecting included: the
    summary it logs at stop (backend/loop_stalls.py), or "" when it had none."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if " at stop: " in ln]
    except OSError:
        return ""
    return lines[-1].split(" at stop: ", 1)[1] if lines else ""


def edge_totals(log: Path) -> str:
    """The first gateway's edge counts at stop (backend/gateway.py `_log_totals`: logged
    when it shed or refused anything), or ""."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines()
                 if "gateway edge totals: " in ln]
    except OSError:
        return ""
    return lines[-1].split("gateway edge totals: ", 1)[1] if lines else ""


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return sorted(out)


class _Event(threading.Thread):
    def __init__(self, when: float, fn):
        super().__init__(daemon=True, name="loadtest-event")
        self.when, self.fn, self.error = when, fn, None

    def run(self) -> None:
        time.sleep(max(0.0, self.when - time.time()))
        try:
            self.fn()
        except Exception as exc:  # handed to the run's thread
            self.error = exc


def _at(when: float, fn) -> _Event:
    """Run fn on its own thread at wall time `when` (it keeps the caller's namespaces)."""
    ev = _Event(when, fn)
    ev.start()
    return ev


def _report(opts, counts, pending_seqs, results, gstats, rss_idle_kb, rss_connected_kb,
            connect_s, gateway_cpu, client_cpu) -> Report:
    rep = Report(options=asdict(opts), vehicles=opts.vehicles, connect_s=connect_s,
                 gateway_cpu_pct=gateway_cpu, client_cpu_pct=client_cpu,
                 gateway_rss_mb=gstats.peak_kb / 1024)
    lat, live, lag = Histogram(), Histogram(), Histogram()
    made: dict[str, int] = {}
    unacked: dict[str, list[int]] = {}
    acked_window = dg_in = dg_out = 0
    kinds: dict[str, int] = {}
    for r in results:
        dg_in += r["datagrams"][0]
        dg_out += r["datagrams"][1]
        for kind, n in r.get("datagram_kinds", {}).items():
            kinds[kind] = kinds.get(kind, 0) + n
        for key, n in r.get("wakeups", {}).items():
            rep.client_wakeups[key] = rep.client_wakeups.get(key, 0) + n
        for vid, (m, a, u) in r["vehicles"].items():
            made[vid] = m
            unacked[vid] = u
            rep.made += m
            rep.acked += a
        acked_window += r["acked_in_window"]
        lat.merge(Histogram.from_json(r["latency"]))
        live.merge(Histogram.from_json(r["live_latency"]))
        lag.merge(Histogram.from_json(r.get("timer_lag", {})))
        rep.client_cpu_max_pct = max(rep.client_cpu_max_pct,
                                     r["cpu_s"] / opts.duration_s * 100)
        for k, v in r["errors"].items():
            rep.errors[k] = rep.errors.get(k, 0) + v
        rep.connects += r["connects"]
        rep.migrations += r["migrations"]
        rep.reconnects += r["reconnects"]
        edge = r.get("edge", {})
        rep.handshakes += edge.get("handshakes", 0)
        rep.resumed += edge.get("resumed", 0)
        rep.early_data += edge.get("early_data_accepted", 0)
        rep.batches += r["batches"]
        if r["storm"]:
            s = rep.storm or {"backlog": 0, "drained": 0, "drain_max_s": None, "drain_p50_s": None}
            s["backlog"] += r["storm"]["backlog"]
            s["drained"] += r["storm"]["drained"]
            for key in ("drain_max_s", "drain_p50_s"):
                vals = [x for x in (s[key], r["storm"][key]) if x is not None]
                s[key] = max(vals) if vals else None
            # when the radio came back (wall clock; the workers' differ by ms): the drain's start
            s["back_wall"] = min(s.get("back_wall") or float("inf"), r["storm"]["back_wall"])
            rep.storm = s
    rep.acked_per_s = acked_window / opts.duration_s
    rep.gateway_cpu_ms_per_reading = (gateway_cpu * 10 * opts.duration_s) / max(1, acked_window)
    rep.client_cpu_ms_per_reading = (client_cpu * 10 * opts.duration_s) / max(1, acked_window)
    rep.datagrams_in_per_reading = dg_in / max(1, acked_window)
    rep.datagrams_out_per_reading = dg_out / max(1, acked_window)
    rep.datagram_kinds = {k: n / max(1, acked_window) for k, n in sorted(kinds.items())}
    rep.ack_p50_ms, rep.ack_p95_ms, rep.ack_p99_ms = (lat.percentile(p) for p in (50, 95, 99))
    rep.live_p99_ms = live.percentile(99)
    rep.client_lag_p50_ms, rep.client_lag_p99_ms = lag.percentile(50), lag.percentile(99)
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
