"""One load-generator process: many simulated vehicles, each a real geostream/1.0 client.

Every vehicle runs the agent's own uplink: its `UplinkMachine` decides (connect, reconnect
backoff, pacing, stall rule, liveness, migration, acks), its batches follow the agent's drain
order over its in-memory journal (loadtest/driver.py is the shell, loadtest/fleet.py the
readings). All vehicles share one event loop, one UDP socket per local address and one timer
heap (loadtest/edge.py); their QUIC library is the agent's default unless the spec's
`quic_library` (or $FLEET_QUIC_LIBRARY) names another.

Run by `loadtest.run` as `python -m loadtest.client SPEC.json`: it prints
`connected …` once its vehicles are connected, waits for `go WALL_TIME` on stdin, runs the
mode's schedule, drains, and prints one JSON result line.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import random
import resource
import ssl
import sys
import time

from geostream import ALPN
from geostream.limits import IDLE_TIMEOUT_S
from geostream.quic import AGENT_DEFAULT_LIBRARY, library

from .driver import Driver
from .edge import ClientEdge
from .fleet import Histogram, SimVehicle
from .report import drain_times

# Connections in flight per process while the fleet connects, each from its first packet to
# its welcome (not only its handshake: the gateway's hello, authentication and welcome are
# the larger part of a connect): a gateway answers a few hundred a second, so 10,000 at once
# would only time out and retry, and more would wait in its socket buffer than it can answer
# within its hello deadline.
CONNECT_CONCURRENCY = 32
# How long the ramp may take before the worker reports how many got through (loadtest.run
# allows the same per vehicle).
CONNECT_BUDGET_S = 30.0
CONNECT_BUDGET_S_PER_VEHICLE = 0.25
# Loopback addresses a vehicle binds in turn (a migration takes the next): all of 127/8
# reaches the gateway on 127.0.0.1.
LOOPBACK_HOSTS = ("127.0.0.1", "127.0.0.2")
# Resolution of the acknowledgement timeline (ticks with at least one new ack, after "go"):
# the longest run of empty ticks is the run's gap without acknowledgements (a failover's).
ACK_TICK_S = 0.1
log = logging.getLogger("loadtest.client")

# Vehicles not drained whose state a worker logs at the drain's end (`Driver.describe`).
UNDRAINED_LOGGED = 20
# How often the ramp and the drain look whether every vehicle is welcomed / drained.
POLL_S = 0.1
# The edge's counts of its loop wakeups (`Worker.wakeups`): socket reads and the datagrams they
# read, timer wakeups and the owners woken in them.
WAKEUP_KEYS = ("reads", "datagrams_received", "wakeups", "owner_wakes")


class Worker:
    def __init__(self, spec: dict, loop=None, edge_class: type[ClientEdge] = ClientEdge):
        """`loop`: the event loop (default the running one), `edge_class` the edge: a bench
        gives an emulated loop and an edge without sockets."""
        self.spec = spec
        self.loop = loop or asyncio.get_running_loop()
        # addresses to bind: a migration moves to the next one, as a vehicle's modem gets a new
        # address (every 127/8 address reaches the gateway on loopback; cluster tests in
        # namespaces give theirs)
        self.local_hosts = spec.get("local_hosts") or list(LOOPBACK_HOSTS)
        self.local_host = self.local_hosts[0]
        self.send_interval_s = spec["send_interval_s"]
        # the vehicles' QUIC library (geostream/quic/; else $FLEET_QUIC_LIBRARY, else the
        # agent's default: what real vehicles run)
        self.quic = library(spec.get("quic_library") or None, default=AGENT_DEFAULT_LIBRARY)
        cfg = self.quic.QuicConfiguration(
            is_client=True, alpn_protocols=[ALPN], idle_timeout=IDLE_TIMEOUT_S,
            server_name="localhost", verify_mode=ssl.CERT_REQUIRED)
        cfg.load_verify_locations(cafile=spec["ca"])
        self.quic_config = cfg
        self.edge = edge_class(self.quic, cfg.connection_id_length, self.loop)
        self.errors: dict[str, int] = {}
        self.connects = self.migrations = self.reconnects = self.batches = self.acked = 0
        self.welcomed = 0  # vehicles welcomed at least once
        self.ack_ticks: set[int] = set()
        self.go_wall = 0.0
        self.go_loop: float | None = None  # "go" on the loop's clock
        self.stopping = False
        self.mode = spec["mode"]
        self.churn_p = spec.get("churn_per_s", 0.0) * self.send_interval_s
        self.rng = random.Random(spec["seed"])
        # connects in flight while the fleet connects (after "go": no limit, as real agents)
        self.ramp_limit: int | None = CONNECT_CONCURRENCY
        self.in_ramp = 0
        self._waiting: collections.deque[Driver] = collections.deque()
        start = self.loop.time()
        wall = time.time_ns() // 1_000_000
        self.latency, self.live_latency = Histogram(), Histogram()  # all vehicles' acks
        self.drivers = [
            Driver(self, SimVehicle(v["id"], v["token"], v["epoch"], spec["rate_hz"], start,
                                    wall, seed=v["epoch"], latency=self.latency,
                                    live_latency=self.live_latency), tuple(v["server"]))
            for v in spec["vehicles"]]
        for d in self.drivers:
            d.sim.making = False  # nothing is made before "go"

    def now(self) -> float:
        """The loop's time, never going back (the edge's clock, which the QUIC cores get)."""
        return self.edge.now()

    def request_connect(self, d: Driver) -> None:
        """`d` wants to connect: now, or when a ramp slot frees (during the ramp)."""
        if d._queued:
            return
        if self.ramp_limit is not None and self.in_ramp >= self.ramp_limit:
            d._queued = True
            self._waiting.append(d)
            return
        self.in_ramp += 1
        d.open()

    def slot_freed(self) -> None:
        """A connect was welcomed or failed: its slot goes to the next vehicle waiting."""
        self.in_ramp -= 1
        self._admit()

    def _admit(self) -> None:
        """Open the connections waiting for a ramp slot, as far as slots allow."""
        while self._waiting and (self.ramp_limit is None
                                 or self.in_ramp < self.ramp_limit):
            d = self._waiting.popleft()
            self.in_ramp += 1
            d.open()

    def other_host(self, current: str | None) -> str:
        """The local address after `current` (a migration's new address)."""
        hosts = self.local_hosts
        return hosts[(hosts.index(current) + 1) % len(hosts)] if current in hosts else hosts[0]

    def acked_now(self, n: int, now: float) -> None:
        """Count `n` new acknowledgements at loop time `now` on the timeline (in ticks since
        "go", the wall time every worker was given)."""
        self.acked += n
        if n and self.go_loop is not None:
            self.ack_ticks.add(int((now - self.go_loop) / ACK_TICK_S))

    def error(self, kind: str) -> None:
        if not self.stopping:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    async def connect_all(self) -> int:
        """Start every vehicle's machine; wait (bounded) until each was welcomed once."""
        for d in self.drivers:
            d.start()
        budget = CONNECT_BUDGET_S + len(self.drivers) * CONNECT_BUDGET_S_PER_VEHICLE
        until = self.loop.time() + budget
        while self.welcomed < len(self.drivers) and self.loop.time() < until:
            await asyncio.sleep(POLL_S)
        return self.welcomed

    def churn_tick(self) -> None:
        """churn/migrate: each established vehicle, with chance `churn_p` per send interval,
        moves to a new address (migrate mode: always; churn: half the time) or loses its
        connection; then again one interval later."""
        if self.stopping:
            return
        for d in self.drivers:
            if d.link is None or self.rng.random() >= self.churn_p:
                continue
            if self.mode == "migrate" or self.rng.random() < 0.5:
                d.move(self.other_host(d.link.local_host))
            else:
                d.churn()
        self.loop.call_later(self.send_interval_s, self.churn_tick)

    def datagrams(self) -> tuple[int, int]:
        """Datagrams all vehicles sent and received so far (gateway in, gateway out)."""
        stats = self.edge.stats
        return stats["datagrams_sent"], stats["datagrams_received"]

    def wakeups(self) -> dict[str, int]:
        """The edge's loop wakeups so far (loadtest/edge.py): socket reads and the datagrams
        they read, timer wakeups and the owners (vehicles, connections) woken in them."""
        stats = self.edge.stats
        return {k: stats[k] for k in WAKEUP_KEYS}

    def datagram_kinds(self) -> dict[str, int]:
        """Datagrams so far by kind (loadtest/edge.py `SENT_KINDS`): `sent_*` reached the
        gateway, `received_*` came from it."""
        return {k: v for k, v in self.edge.stats.items()
                if k.startswith(("sent_", "received_"))}

    async def run(self, go_wall: float) -> dict:
        spec = self.spec
        self.go_wall = go_wall
        self.ramp_limit = None  # every vehicle still waiting for a slot connects now
        self._admit()
        t0 = self.go_loop = self.loop.time() + (go_wall - time.time())
        wall0 = int(go_wall * 1000)
        for d in self.drivers:
            # each vehicle's readings start at its own offset in the interval, as real ones do
            d.sim.start = t0 + self.rng.uniform(0, 1 / spec["rate_hz"])
            d.sim.wall_ms_at_start = wall0 + int((d.sim.start - t0) * 1000)
            d.sim.making = True
        await asyncio.sleep(max(0.0, t0 - self.loop.time()))
        self.edge.lag = Histogram()  # the window's only
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        dg0, kinds0, wakes0 = self.datagrams(), self.datagram_kinds(), self.wakeups()
        if self.mode in ("churn", "migrate"):
            self.loop.call_later(self.send_interval_s, self.churn_tick)
        storm = None
        if self.mode == "storm":
            await asyncio.sleep(spec["outage_at_s"])
            for d in self.drivers:
                d.outage()
            await asyncio.sleep(spec["outage_s"])
            now, back_wall = self.loop.time(), time.time()  # the radio is back: the drain starts
            for d in self.drivers:
                d.sim.make_due(now)
                d.reconnected_at, d.drain_target = now, d.sim.made
            backlog = sum(d.sim.journal.pending for d in self.drivers)
            for d in self.drivers:
                d.radio_back()  # all at once
            storm = {"backlog": backlog, "back_wall": back_wall}
        await asyncio.sleep(max(0.0, t0 + spec["duration_s"] - self.loop.time()))
        acked_in_window = self.acked
        timer_lag = self.edge.lag.to_json()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        dg1, kinds1, wakes1 = self.datagrams(), self.datagram_kinds(), self.wakeups()
        end = t0 + spec["duration_s"]
        self.stopping = True  # no more churn
        for d in self.drivers:
            d.sim.make_due(end)
            d.sim.making = False
        drain_until = self.loop.time() + spec["drain_timeout_s"]
        while (self.loop.time() < drain_until
               and any(d.sim.journal.pending for d in self.drivers)):
            await asyncio.sleep(POLL_S)
        drain = drain_times(
            [(d.sim.journal.pending, d.sim.last_ack_at) for d in self.drivers], end,
            self.loop.time())
        stuck = [d for d in self.drivers if d.sim.journal.pending]
        now = self.loop.time()
        undrained = collections.Counter(d.stall_kind(now) for d in stuck)
        oldest = max((now - d.sim.made_at(min(d.sim.journal.rows)) for d in stuck), default=None)
        if stuck:
            log.warning("%d not drained (%s); %s", len(stuck), dict(undrained),
                        self.edge.describe(now))
        for d in stuck[:UNDRAINED_LOGGED]:
            log.warning("not drained: %s", d.describe(now))
        for d in self.drivers:
            d.stop()
        await asyncio.sleep(0.2)
        lat, live = self.latency, self.live_latency
        if storm is not None:
            drains = sorted(d.drained_after for d in self.drivers if d.drained_after is not None)
            storm.update(drained=len(drains),
                         drain_max_s=drains[-1] if drains else None,
                         drain_p50_s=drains[len(drains) // 2] if drains else None)
        return {
            "vehicles": {d.sim.vehicle_id: [d.sim.made, d.sim.acked, d.sim.unacked]
                         for d in self.drivers},
            "acked_in_window": acked_in_window, "latency": lat.to_json(),
            "live_latency": live.to_json(), "errors": {**self.errors, **self.edge.errors},
            "connects": self.connects,
            "migrations": self.migrations, "reconnects": self.reconnects,
            "batches": self.batches, "storm": storm, "edge": dict(self.edge.stats),
            "ack_ticks": sorted(self.ack_ticks), "timer_lag": timer_lag, "drain": drain,
            "undrained": dict(undrained), "unacked_oldest_s": oldest,
            "datagrams": [dg1[0] - dg0[0], dg1[1] - dg0[1]],
            "datagram_kinds": {k: v - kinds0.get(k, 0) for k, v in kinds1.items()
                               if v > kinds0.get(k, 0)},
            "wakeups": {k: wakes1[k] - wakes0[k] for k in WAKEUP_KEYS},
            "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
            "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }


async def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    worker = Worker(spec)
    t = time.monotonic()
    connected = await worker.connect_all()
    print(f"connected {connected} in {time.monotonic() - t:.1f}s "
          f"errors {sum(worker.errors.values())}", flush=True)
    line = await worker.loop.run_in_executor(None, sys.stdin.readline)
    if not line.startswith("go "):
        return
    result = await worker.run(float(line.split()[1]))
    print("result " + json.dumps(result), flush=True)
    os._exit(0)  # thousands of sockets and tasks: no need to tear them down one by one


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
