"""One load-generator process: many simulated vehicles, each a real geostream/1.0 client.

Every vehicle owns a UDP socket and a `QuicConnection` of the seam's QUIC library (through the
agent's own `agent.quic_link.QuicLink`) and a `geostream.session.ClientSession`; its readings,
backlog and acks live in a `SimVehicle`. One pace timer per vehicle sends a batch every
`send_interval_s` (the agent's live pacing); backlog goes as fast as acks return credit.

Run by `loadtest.run` as `python -m loadtest.client SPEC.json`: it prints
`connected …` once its vehicles are connected, waits for `go WALL_TIME` on stdin, runs the
mode's schedule, drains, and prints one JSON result line.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import ssl
import sys
import time

from geostream import ALPN
from geostream.limits import IDLE_TIMEOUT_S
from geostream.quic import library

from .driver import RECONNECT_DELAY_S, Driver, datagrams
from .fleet import Histogram, SimVehicle

# Handshakes in flight per process while the fleet connects: a gateway answers a few hundred
# handshakes a second, so 10,000 at once would only time out and retry.
CONNECT_CONCURRENCY = 32
# Resolution of the acknowledgement timeline (ticks with at least one new ack, after "go"):
# the longest run of empty ticks is the run's gap without acknowledgements (a failover's).
ACK_TICK_S = 0.1


class Worker:
    def acked_now(self, n: int) -> None:
        """Count `n` new acknowledgements on the timeline (wall clock, shared by the workers)."""
        self.acked += n
        if n and self.go_wall:
            self.ack_ticks.add(int((time.time() - self.go_wall) / ACK_TICK_S))

    def __init__(self, spec: dict):
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        # addresses to bind (cluster tests in namespaces give more than one: a migration moves
        # to the next, a new address as a vehicle's modem gets)
        self.local_hosts = spec.get("local_hosts") or ["127.0.0.1"]
        self.local_host = self.local_hosts[0]
        self.stall_s = spec.get("stall_s")  # e.g. STALL_S: reconnect when a node went silent
        self._next_host = 0
        self.send_interval_s = spec["send_interval_s"]
        # the vehicles' QUIC library (geostream/quic/; None: the process's)
        self.quic = library(spec.get("quic_library"))
        cfg = self.quic.QuicConfiguration(
            is_client=True, alpn_protocols=[ALPN], idle_timeout=IDLE_TIMEOUT_S,
            server_name="localhost", verify_mode=ssl.CERT_REQUIRED)
        cfg.load_verify_locations(cafile=spec["ca"])
        self.quic_config = cfg
        self.errors: dict[str, int] = {}
        self.connects = self.migrations = self.reconnects = self.batches = self.acked = 0
        self.ack_ticks: set[int] = set()
        self.go_wall = 0.0
        self.stopping = False
        self.mode = spec["mode"]
        self.churn_p = spec.get("churn_per_s", 0.0) * self.send_interval_s
        self.rng = random.Random(spec["seed"])
        start = self.loop.time()
        wall = time.time_ns() // 1_000_000
        self.drivers = [
            Driver(self, SimVehicle(v["id"], v["token"], v["epoch"], spec["rate_hz"], start,
                                    wall, seed=v["epoch"]), tuple(v["server"]))
            for v in spec["vehicles"]]
        for d in self.drivers:
            d.sim.making = False  # nothing is made before "go"

    def next_local_host(self) -> str:
        self._next_host += 1
        return self.local_hosts[self._next_host % len(self.local_hosts)]

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def connect_all(self) -> None:
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(d: Driver) -> None:
            async with sem:
                await d.connect()

        await asyncio.gather(*(one(d) for d in self.drivers))

    def on_tick(self, d: Driver, now: float) -> None:
        if (self.mode in ("churn", "migrate") and d.online and d.session is not None
                and d.session.ready and not self.stopping):  # only established sessions churn
            if self.rng.random() < self.churn_p:
                if self.mode == "migrate" or self.rng.random() < 0.5:
                    self.loop.create_task(d.migrate())
                else:
                    self.reconnects += 1
                    d.disconnect(tell_peer=True)
                    self.loop.call_later(self.rng.uniform(*RECONNECT_DELAY_S),
                                         lambda: self.loop.create_task(d.connect()))

    async def run(self, go_wall: float) -> dict:
        spec = self.spec
        self.go_wall = go_wall
        t0 = self.loop.time() + (go_wall - time.time())
        wall0 = int(go_wall * 1000)
        for d in self.drivers:
            d.sim.start, d.sim.wall_ms_at_start, d.sim.making = t0, wall0, True
            d.start_pacing(t0 + self.rng.uniform(0, self.send_interval_s))
        await asyncio.sleep(max(0.0, t0 - self.loop.time()))
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        dg0 = datagrams(self.drivers)
        storm = None
        if self.mode == "storm":
            await asyncio.sleep(spec["outage_at_s"])
            for d in self.drivers:
                d.online = False
                d.disconnect(tell_peer=False)  # the radio is gone: nothing reaches the gateway
            await asyncio.sleep(spec["outage_s"])
            now = self.loop.time()
            for d in self.drivers:
                d.online, d.reconnected_at, d.drain_target = True, now, d.sim.made
            backlog = sum(len(d.sim.unacked) for d in self.drivers)
            await asyncio.gather(*(d.connect() for d in self.drivers))  # all at once
            storm = {"backlog": backlog}
        await asyncio.sleep(max(0.0, t0 + spec["duration_s"] - self.loop.time()))
        acked_in_window = self.acked
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        dg1 = datagrams(self.drivers)
        for d in self.drivers:
            d.sim.make_due(t0 + spec["duration_s"])
            d.sim.making = False
            d.pump()
        drain_until = self.loop.time() + spec["drain_timeout_s"]
        while self.loop.time() < drain_until and any(d.sim.unacked for d in self.drivers):
            for d in self.drivers:
                d.pump()
            await asyncio.sleep(0.1)
        self.stopping = True
        for d in self.drivers:
            d.disconnect(tell_peer=True)
        await asyncio.sleep(0.2)
        lat, live = Histogram(), Histogram()
        for d in self.drivers:
            lat.merge(d.sim.latency)
            live.merge(d.sim.live_latency)
        if storm is not None:
            drains = sorted(d.drained_after for d in self.drivers if d.drained_after is not None)
            storm.update(drained=len(drains),
                         drain_max_s=drains[-1] if drains else None,
                         drain_p50_s=drains[len(drains) // 2] if drains else None)
        return {
            "vehicles": {d.sim.vehicle_id: [d.sim.made, d.sim.acked, list(d.sim.unacked)]
                         for d in self.drivers},
            "acked_in_window": acked_in_window, "latency": lat.to_json(),
            "live_latency": live.to_json(), "errors": self.errors, "connects": self.connects,
            "migrations": self.migrations, "reconnects": self.reconnects,
            "batches": self.batches, "storm": storm, "ack_ticks": sorted(self.ack_ticks),
            "datagrams": [dg1[0] - dg0[0], dg1[1] - dg0[1]],
            "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
            "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }


async def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    worker = Worker(spec)
    t = time.monotonic()
    await worker.connect_all()
    print(f"connected {worker.connects} in {time.monotonic() - t:.1f}s "
          f"errors {sum(worker.errors.values())}", flush=True)
    line = await worker.loop.run_in_executor(None, sys.stdin.readline)
    if not line.startswith("go "):
        return
    result = await worker.run(float(line.split()[1]))
    print("result " + json.dumps(result), flush=True)
    os._exit(0)  # thousands of sockets and tasks: no need to tear them down one by one


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
