"""What a load test run measured: the processes' CPU and memory (`ProcStats`, from /proc) and
the `Report` with its verdict and printed lines."""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# The machine the projection is for: the project's 2-core VM (docs/benchmarks.md, Reach).
PROJECTION_CORES = 2.0
# A process at this share of one core (or a machine with this little idle) is saturated: the
# rest goes to scheduling and measurement noise.
SATURATED_PCT = 90.0


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
    batches: int = 0              # batches the vehicles sent (their machines' pacing)
    connects: int = 0
    handshakes: int = 0           # QUIC handshakes completed (connects and probes)
    resumed: int = 0              # of them resumed with a session ticket
    early_data: int = 0           # of them whose 0-RTT hello the gateway accepted
    migrations: int = 0
    reconnects: int = 0
    gateway_cpu_pct: float = 0.0      # of one core, summed over gateway processes
    gateway_cpu_ms_per_reading: float = 0.0  # gateway CPU time / readings acked in the window
    router_cpu_pct: float | None = None  # of one core: `python -m backend router`, if any
    gateway_rss_mb: float = 0.0       # peak, summed over gateway processes
    gateway_kb_per_vehicle: float = 0.0
    client_cpu_pct: float = 0.0
    client_cpu_ms_per_reading: float = 0.0   # load generator CPU time / readings acked
    client_us_per_vehicle_s: float = 0.0     # load generator CPU µs per vehicle per second
    client_cpu_max_pct: float = 0.0   # of one core: the busiest client process (each has one)
    # the client processes' loop wakeups in the window, summed (`Worker.wakeups`)
    client_wakeups: dict = field(default_factory=dict)
    client_lag_p50_ms: float | None = None  # how late the client processes' timers fired
    client_lag_p99_ms: float | None = None
    store_cpu_pct: float = 0.0        # of one core: the throw-away PostgreSQL server's tree
    quic_clients: str = ""            # the QUIC library of the simulated vehicles
    quic_gateway: str = ""            # and of the gateways
    machine_cores: int = 0
    machine_idle_pct: float = 0.0     # of the whole machine (all cores) during the window
    other_cpu_pct: float = 0.0        # of one core: processes neither gateway nor client
    load_1m: float = 0.0              # the machine's 1-minute load average when the window began
    datagrams_in_per_reading: float = 0.0   # to the gateway, per reading acked in the window
    datagrams_out_per_reading: float = 0.0  # from the gateway
    # the same by kind (loadtest/edge.py `SENT_KINDS`): "sent_*" reached the gateway,
    # "received_*" came from it, each per reading acked in the window
    datagram_kinds: dict = field(default_factory=dict)
    # --reuseport: datagrams one worker relayed to another (backend/cluster/relay.py) per
    # reading acked over the whole run (the workers' totals at stop)
    relay_hops_per_reading: float | None = None
    loop_stalls: str = ""  # the first gateway's loop stalls, whole run (backend/loop_stalls.py)
    # the first gateway's edge counts at stop when it shed or refused anything: new connections
    # opened, Retry, refused busy, handshakes abandoned, … (backend/gateway.py `_log_totals`)
    edge_totals: str = ""
    storm: dict | None = None
    ack_gap_s: float = 0.0        # longest time in the window no vehicle got an acknowledgement
    # after the load stopped: how long until each vehicle's journal was empty (max, p99 over
    # the drained ones), how many were not, and the longest any of those had gone without an
    # ack when the drain timed out (`drain_summary`)
    drain_max_s: float | None = None
    drain_p99_s: float | None = None
    undrained_vehicles: int = 0
    undrained_silent_max_s: float | None = None
    # the vehicles not drained by what each waited for (`Driver.stall_kind`), and how long
    # before the drain gave up the oldest reading never acked was made: readings never acked
    # are in no latency percentile, so a vehicle that stalled cannot hide in p99 unsaid
    undrained_kinds: dict = field(default_factory=dict)
    unacked_oldest_s: float | None = None
    # user and system CPU apart, % of one core over the window (`ProcStats.cpu_times`)
    gateway_user_pct: float = 0.0
    gateway_sys_pct: float = 0.0
    client_user_pct: float = 0.0
    client_sys_pct: float = 0.0
    # the machine yardstick just before the run: ms for YARDSTICK_ADDITIONS additions in a
    # pure-Python loop in the load tester's process (best of YARDSTICK_ROUNDS), to compare
    # runs on different machines or minutes
    yardstick_ms: float | None = None
    # the memory yardstick, same moment: ns per step of `memory_walk_ns`, what a miss to
    # memory costs a Python program now (the additions above stay in the CPU's caches)
    memory_ns: float | None = None

    def projected_vehicles(self, cores: float, with_clients: bool = False) -> float:
        """Vehicles the measured CPU per reading allows on `cores` at the run's rate."""
        ms = self.gateway_cpu_ms_per_reading + (self.client_cpu_ms_per_reading
                                                if with_clients else 0.0)
        return cores * 1000 / ms / self.options["rate_hz"] if ms > 0 else 0.0

    def router_cpu_ms_per_reading(self) -> float:
        """The router's CPU per acked reading, as the gateway's (same window)."""
        if not self.router_cpu_pct or not self.gateway_cpu_pct:
            return 0.0
        return self.gateway_cpu_ms_per_reading * self.router_cpu_pct / self.gateway_cpu_pct

    def bottleneck(self) -> str:
        """Which side ran out of CPU in the window, if any (a process is one core at most)."""
        o = self.options
        busy = []
        if self.gateway_cpu_pct >= SATURATED_PCT * _gateways(o):
            busy.append("gateway")
        if (self.client_cpu_pct >= SATURATED_PCT * o["workers"]
                or self.client_cpu_max_pct >= SATURATED_PCT):  # one event loop per process
            busy.append("client")
        if self.machine_idle_pct <= 100 - SATURATED_PCT:
            busy.append("machine (no idle CPU)")
        return " and ".join(busy) or "none (CPU to spare)"

    @property
    def ok(self) -> bool:
        """Exactly once for everything acknowledged, and the run drained."""
        return (self.lost == 0 and self.duplicated == 0 and self.unexpected == 0
                and self.unacked == 0 and self.undrained_vehicles == 0)

    def verdict(self) -> str:
        if self.ok:
            return "OK: 0 lost, 0 duplicated"
        if self.lost or self.duplicated or self.unexpected:
            return (f"FAILED: lost {self.lost}, duplicated {self.duplicated}, "
                    f"unexpected {self.unexpected}")
        return (f"NOT DRAINED: 0 lost, 0 duplicated, {self.unacked} still in the vehicles, "
                f"{self.undrained_vehicles} vehicles not drained")

    def lines(self) -> list[str]:
        o = self.options
        out = [f"load test: {self.vehicles} vehicles × {o['rate_hz']} Hz, {o['mode']}, "
               f"{o['duration_s']:.0f} s, store {o['db'].split('://')[0]}, "
               f"{_gateways(o)} gateway / {o['workers']} client processes, QUIC gateway "
               f"{self.quic_gateway or '?'} / clients {self.quic_clients or '?'}",
               f"  connected          {self.connected} in {self.connect_s:.1f} s "
               f"({self.connects} connects, {self.reconnects} reconnects, "
               f"{self.migrations} migrations; {self.handshakes} handshakes, "
               f"{self.resumed} resumed, {self.early_data} with 0-RTT accepted)",
               f"  acknowledged       {self.acked_per_s:,.0f} readings/s "
               f"(offered {self.vehicles * o['rate_hz']:,.0f}/s)",
               f"  ack latency        p50 {_ms(self.ack_p50_ms)}  p95 {_ms(self.ack_p95_ms)}  "
               f"p99 {_ms(self.ack_p99_ms)}  (live batches p99 {_ms(self.live_p99_ms)})"
               + self.never_acked_note(),
               f"  gateway            {self.gateway_cpu_pct:.0f} % CPU "
               f"(user {self.gateway_user_pct:.0f}, system {self.gateway_sys_pct:.0f}), "
               f"{self.gateway_rss_mb:.0f} MB RSS, "
               f"{self.gateway_kb_per_vehicle:.1f} KB per connected vehicle, "
               f"{self.gateway_cpu_ms_per_reading:.2f} ms CPU per acked reading",
               *([f"  router             {self.router_cpu_pct:.0f} % CPU, "
                  f"{self.router_cpu_ms_per_reading():.2f} ms CPU per acked reading"]
                 if self.router_cpu_pct is not None else []),
               f"  clients            {self.client_cpu_pct:.0f} % CPU "
               f"(user {self.client_user_pct:.0f}, system {self.client_sys_pct:.0f}), "
               f"{self.client_cpu_ms_per_reading:.2f} ms CPU per acked reading, "
               f"{self.client_us_per_vehicle_s:.0f} µs CPU per vehicle-second; busiest "
               f"process {self.client_cpu_max_pct:.0f} %, its timers late by p50 "
               f"{_ms(self.client_lag_p50_ms)} p99 {_ms(self.client_lag_p99_ms)} (a client "
               "behind books its acks that much late)",
               *([f"  client wakeups     {self.client_wakeups_line()}"]
                 if self.client_wakeups.get("reads") or self.client_wakeups.get("wakeups")
                 else []),
               f"  machine            {self.machine_cores} cores, {self.machine_idle_pct:.0f} % "
               f"idle, store server {self.store_cpu_pct:.0f} % CPU, other processes "
               f"{self.other_cpu_pct:.0f} % CPU, load "
               f"{self.load_1m:.1f} at the start; bottleneck: {self.bottleneck()}",
               f"  yardstick          {_ms(self.yardstick_ms)} for "
               f"{YARDSTICK_ADDITIONS / 1e6:.0f}M additions in Python before the run"
               + ("" if self.memory_ns is None else
                  f"; {self.memory_ns:,.0f} ns a step of a walk through "
                  f"{MEMORY_ENTRIES / 2**20:.0f}M list entries"),
               f"  projection         {self.projected_vehicles(1.0):,.0f} vehicles at "
               f"{o['rate_hz']} Hz on one gateway core, "
               f"{self.projected_vehicles(PROJECTION_CORES, with_clients=True):,.0f} with the "
               f"load generator on the same {PROJECTION_CORES:.0f} cores "
               f"(CPU per reading only; not a measured rate)",
               f"  datagrams          {self.datagrams_in_per_reading:.2f} in + "
               f"{self.datagrams_out_per_reading:.2f} out at the gateway per acked reading"
               + (f", {self.relay_hops_per_reading:.4f} relayed between workers"
                  if self.relay_hops_per_reading is not None else ""),
               *([f"  by kind            in: {_kinds(self.datagram_kinds, 'sent_')}; "
                  f"out: {_kinds(self.datagram_kinds, 'received_')}"]
                 if self.datagram_kinds else []),
               f"  errors             {self.errors or 'none'}",
               f"  store              {self.stored:,} stored of {self.made:,} made: "
               f"lost {self.lost}, duplicated {self.duplicated}, unexpected {self.unexpected}, "
               f"still in the vehicles (not drained) {self.unacked}"]
        out.append(f"  ack gap            {self.ack_gap_s:.1f} s: the longest time in the window "
                   "without any acknowledgement")
        out.append(f"  drain              {self.drain_line()}")
        if self.loop_stalls:
            out.append(f"  gateway loop       {self.loop_stalls} (whole run, connecting included)")
        if self.edge_totals:
            out.append(f"  gateway edge       {self.edge_totals} (whole run)")
        if self.storm:
            s = self.storm
            out.append(f"  outage storm       backlog {s['backlog']:,} readings, drained in "
                       f"max {_s(s['drain_max_s'])} (p50 {_s(s['drain_p50_s'])}), "
                       f"{s['drained']} of {self.vehicles} vehicles")
        out.append("  RESULT " + self.verdict())
        return out


    def client_wakeups_line(self) -> str:
        """The clients' loop wakeups per vehicle-second and what each served: the fixed cost
        of a wakeup is shared by that many datagrams or vehicles."""
        w, vs = self.client_wakeups, max(1.0, self.vehicles * self.options["duration_s"])
        reads, timers = w.get("reads", 0), w.get("wakeups", 0)
        return (f"socket reads {reads / vs:.3f} per vehicle-second "
                f"({w.get('datagrams_received', 0) / max(1, reads):.1f} datagrams each), "
                f"timer wakeups {timers / vs:.3f} "
                f"({w.get('owner_wakes', 0) / max(1, timers):.1f} owners each)")

    def drain_line(self) -> str:
        """How the drain after the load went, in one line: with the vehicles not drained, by
        what each waited for."""
        done = (f"drained in max {_s(self.drain_max_s)} (p99 {_s(self.drain_p99_s)}) after the "
                "load stopped")
        if not self.undrained_vehicles:
            return done
        kinds = "; ".join(f"{n} {kind}" for kind, n in sorted(
            self.undrained_kinds.items(), key=lambda kv: (-kv[1], kv[0])))
        return (f"{self.undrained_vehicles} vehicles not drained"
                + (f" ({kinds})" if kinds else "")
                + f", the longest without an ack {_s(self.undrained_silent_max_s)}; "
                  f"the others {done}")

    def never_acked_note(self) -> str:
        """What the percentiles leave out: readings never acked (a stalled vehicle's)."""
        never = self.made - self.acked
        if never <= 0:
            return ""
        return (f"; not in them: {never:,} readings never acked, the oldest made "
                f"{_s(self.unacked_oldest_s)} before the drain gave up")


def drain_times(vehicles: list[tuple[int, float | None]], end: float,
                now: float) -> dict[str, list[float]]:
    """Each vehicle's drain from (readings still pending, when its latest ack came), the load
    having stopped at `end` and the drain at `now`: "drained_s", how long after `end` a
    drained vehicle got its last ack (0: drained before), and "silent_s", how long each
    vehicle not drained had gone without an ack (since `end` if it never had one)."""
    drained, silent = [], []
    for pending, last_ack in vehicles:
        if pending:
            silent.append(round(now - (end if last_ack is None else last_ack), 3))
        else:
            drained.append(round(max(0.0, (last_ack or end) - end), 3))
    return {"drained_s": drained, "silent_s": silent}


def drain_summary(drained_s: list[float], silent_s: list[float]
                  ) -> tuple[float | None, float | None, int, float | None]:
    """(max, p99 of `drained_s`, vehicles not drained, the longest of `silent_s`); None where
    there is nothing to measure. p99 is the nearest rank."""
    done = sorted(drained_s)
    p99 = done[max(0, math.ceil(0.99 * len(done)) - 1)] if done else None
    return (done[-1] if done else None, p99, len(silent_s),
            max(silent_s) if silent_s else None)


# The machine yardstick (`Report.yardstick_ms`): a few hundred ms at most on a slow machine.
YARDSTICK_ADDITIONS = 1_000_000
YARDSTICK_ROUNDS = 3


def yardstick_ms(additions: int = YARDSTICK_ADDITIONS, rounds: int = YARDSTICK_ROUNDS) -> float:
    """The best of `rounds` times of a fixed pure-Python loop of `additions` additions, ms."""
    best = math.inf
    for _ in range(rounds):
        t = time.perf_counter()
        x = 0
        for i in range(additions):
            x += i
        best = min(best, time.perf_counter() - t)
    return best * 1000


# The memory yardstick (`Report.memory_ns`): a list of 2M ints (~80 MB with their objects),
# well beyond any cache, walked for 200,000 steps (a second or two on a slow machine).
MEMORY_ENTRIES = 1 << 21
MEMORY_STEPS = 200_000
# i -> (A·i + C) mod 2^k is one cycle through every entry (Hull–Dobell: C odd, A ≡ 1 mod 4), in
# an order no prefetcher follows
_WALK_A, _WALK_C = 0x5DEECE66D, 11


def memory_walk(entries: int) -> list[int]:
    """The walk's list: entry i holds the next index; `entries` a power of two."""
    mask = entries - 1
    return [(_WALK_A * i + _WALK_C) & mask for i in range(entries)]


def memory_walk_ns(entries: int = MEMORY_ENTRIES, steps: int = MEMORY_STEPS,
                   rounds: int = YARDSTICK_ROUNDS) -> float:
    """The best of `rounds` times per step of a dependent walk (`i = walk[i]`) through
    `memory_walk(entries)`, less the same loop over 1,024 entries that stay cached, in ns: two
    misses to memory a step (the list's slot, then the int). Timed in the thread's CPU time,
    which counts a stall on memory but not a wait for a core. The 1M additions of
    `yardstick_ms` miss what this sees: they read a fast 40 ms in the minutes when this VM's
    gateway cost 3–4× its CPU per reading of another hour (docs/benchmarks.md, session 18)."""
    walk = memory_walk(entries)
    cached = walk[:1024]
    best = math.inf
    for _ in range(rounds):
        t = time.thread_time()
        i = 0
        for _ in range(steps):
            i = walk[i]
        far = time.thread_time() - t
        t = time.thread_time()
        j = 0
        for _ in range(steps):
            j = cached[j & 1023]
        near = time.thread_time() - t
        best = min(best, (far - near) / steps)
    return max(best, 0.0) * 1e9


def ack_gap_s(ticks: set[int], window_ticks: int, tick_s: float) -> float:
    """The longest run of ticks in [0, window_ticks) with no acknowledgement, in seconds (the
    run's start and end count as acknowledged: vehicles were connected and drained)."""
    marks = sorted(t for t in ticks if 0 <= t < window_ticks)
    edges = [-1, *marks, window_ticks]
    return max((b - a - 1 for a, b in itertools.pairwise(edges)), default=0) * tick_s


def _gateways(o: dict) -> int:
    """Gateway processes: `gateways`, or the workers of `--reuseport N`."""
    return max(o["gateways"], o.get("reuseport") or 0)


def _kinds(kinds: dict, prefix: str) -> str:
    """'data 1.00 ack 0.02 …' for the datagram kinds under `prefix`, largest first."""
    mine = sorted(((n, k[len(prefix):]) for k, n in kinds.items() if k.startswith(prefix)),
                  reverse=True)
    return " ".join(f"{k} {n:.2f}" for n, k in mine) or "-"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"



class MachineCpu:
    """The whole machine's CPU from /proc/stat: busy and idle jiffies since `start()`."""

    def __init__(self) -> None:
        self.cores = os.cpu_count() or 1
        self.load_1m = os.getloadavg()[0]
        self._t0 = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    def idle_and_busy(self) -> tuple[float, float]:
        """(idle % of the whole machine, busy % of one core) since this object was made."""
        total, idle = self._read()
        dt, di = total - self._t0[0], idle - self._t0[1]
        if dt <= 0:
            return 100.0, 0.0
        return di / dt * 100, (dt - di) / dt * 100 * self.cores


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 onwards), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(roots: list[int]) -> list[int]:
    """`roots` and every process descending from them (a gateway's workers, a PostgreSQL
    server's backends), from the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, seen, todo = [], set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:  # a root that descends from another root: counted once
            continue
        seen.add(pid)
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def split_cpu(busy_pct: float, *trees_pct: float) -> float:
    """The machine's busy CPU (% of one core, all cores summed) less what the run's own
    process trees used (gateways, clients, store server, router): what other processes took
    (never below 0: the trees' CPU and the machine's are read a few ms apart)."""
    return max(0.0, busy_pct - sum(trees_pct))


class ProcStats:
    """CPU seconds and peak RSS of process trees, from /proc (RSS sampled by a thread). A
    tree's CPU counts every live process in it and what its reaped children used (cutime,
    cstime), so workers that come and go during a window are not lost."""

    def __init__(self, pids: list[int], tree: bool = True, sample_rss: bool = True):
        self.pids = pids
        self.tree = tree
        self.peak_kb = 0
        self._stop = threading.Event()
        if sample_rss:
            threading.Thread(target=self._sample, daemon=True).start()

    def _members(self) -> list[int]:
        if not self.pids:
            return []
        return process_tree(self.pids) if self.tree else list(self.pids)

    def cpu_s(self) -> float:
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the tree, reaped children's included."""
        tick = os.sysconf("SC_CLK_TCK")
        user = system = 0
        for pid in self._members():
            fields = _stat(pid)
            if fields is not None:  # utime, stime, cutime, cstime
                utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
                user += utime + cutime
                system += stime + cstime
        return user / tick, system / tick

    def rss_kb(self) -> int:
        total = 0
        for pid in self._members():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
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
