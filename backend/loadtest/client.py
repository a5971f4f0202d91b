"""One load-generator process: many simulated vehicles, each a real geostream/1.0 client.

Every vehicle owns a UDP socket and an aioquic `QuicConnection` (through the agent's own
`agent.quic_link.QuicLink`) and a `geostream.session.ClientSession`; its readings, backlog and
acks live in a `SimVehicle`. One pace timer per vehicle sends a batch every `send_interval_s`
(the agent's live pacing); backlog goes as fast as acks return credit.

Run by `backend.loadtest.run` as `python -m backend.loadtest.client SPEC.json`: it prints
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

from aioquic.quic.configuration import QuicConfiguration

from agent.quic_link import QuicLink
from geostream import ALPN
from geostream.errors import ProtocolError
from geostream.limits import IDLE_TIMEOUT_S
from geostream.quic_acks import ack_delay_for
from geostream.session import Acknowledged, ClientSession, PeerError, Welcomed

from .fleet import Histogram, SimVehicle

# Handshakes in flight per process while the fleet connects: a gateway answers a few hundred
# handshakes a second, so 10,000 at once would only time out and retry.
CONNECT_CONCURRENCY = 32
CONNECT_TIMEOUT_S = 30.0
RECONNECT_DELAY_S = (0.2, 1.0)


class Driver:
    """The I/O edge of one vehicle: connection, session, pace timer, mode actions."""

    def __init__(self, worker: Worker, sim: SimVehicle, server: tuple[str, int]):
        self.w = worker
        self.sim = sim
        self.server = server
        self.link: QuicLink | None = None
        self.session: ClientSession | None = None
        self.stream_id = 0
        self.online = True
        self.welcomed: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False  # we closed it on purpose (churn, outage, end)
        self.drain_target = 0  # storm: the backlog to drain after reconnecting
        self.drained_after: float | None = None
        self.reconnected_at = 0.0
        self.links: list[QuicLink] = []  # every connection it made, for the datagram counts
        self.last_rx = 0.0  # when stream data last arrived (the agent's stall rule, STALL_S)

    # --- connection -----------------------------------------------------------------------

    async def connect(self) -> None:
        loop = self.w.loop
        self._closing = False
        self.sim.new_session()
        acked_through = (next(iter(self.sim.unacked)) - 1) if self.sim.unacked else self.sim.made
        session = ClientSession(self.sim.vehicle_id, self.sim.token, self.sim.epoch,
                                acked_through, agent="fleet-loadtest")
        link = QuicLink(self.w.quic_config, self.server, self._on_data,
                        ack_delay_s=ack_delay_for(self.w.send_interval_s))
        self.link, self.session = link, session
        self.links.append(link)
        self.welcomed = loop.create_future()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await link.start(self.w.local_host)
                self.stream_id = link.conn.get_next_available_stream_id()
                link.send(self.stream_id, session.data_to_send())
                await asyncio.shield(link.connected)
                await self.welcomed
        except (OSError, ConnectionError, TimeoutError) as exc:
            link.abort()
            if link is self.link:  # not superseded by a churn reconnect meanwhile
                self.w.error(f"connect: {type(exc).__name__}")
                self._retry_later()
            return
        if link is not self.link:
            return
        self.w.connects += 1
        self.last_rx = loop.time()
        loop.create_task(self._watch(link))
        self.pump()

    async def _watch(self, link: QuicLink) -> None:
        await link.closed.wait()
        if link is self.link and not self._closing and self.online:
            self.w.error(f"closed: {link.close_reason[:60]}")
            self._retry_later()

    def _retry_later(self) -> None:
        if self.w.stopping or not self.online:
            return
        self.link = self.session = None
        self.w.loop.call_later(random.uniform(*RECONNECT_DELAY_S),
                               lambda: self.w.loop.create_task(self.connect()))

    def disconnect(self, tell_peer: bool) -> None:
        self._closing = True
        if self.link is not None:
            if tell_peer:
                self.link.close(0, "load test")
            self.link.abort()
        self.link = self.session = None

    async def migrate(self) -> None:
        if self.link is not None and not self.link.closed.is_set():
            await self.link.migrate(self.w.next_local_host())
            self.w.migrations += 1

    # --- data -----------------------------------------------------------------------------

    def _on_data(self, stream_id: int, data: bytes, end: bool) -> None:
        session, link = self.session, self.link
        if session is None or link is None:
            return
        self.last_rx = self.w.loop.time()
        try:
            events = session.receive_data(data)
        except ProtocolError as exc:
            self.w.error(f"protocol: {exc.code.name}")
            return
        now = self.w.loop.time()
        for ev in events:
            if isinstance(ev, Welcomed):
                if self.welcomed is not None and not self.welcomed.done():
                    self.welcomed.set_result(None)
            elif isinstance(ev, Acknowledged):
                self._acked(ev, now)
            elif isinstance(ev, PeerError):
                self.w.error(f"peer error {ev.code}")
        out = session.data_to_send()
        if out:
            link.send(self.stream_id, out)
        if self.sim._unsent:  # backlog goes as soon as credit comes back
            self.pump()

    def _acked(self, ev: Acknowledged, now: float) -> None:
        unacked = self.sim.unacked
        done = []
        for q in unacked:  # ordered by q: the cumulative part is a prefix
            if q > ev.through:
                break
            done.append(q)
        for lo, hi in ev.ranges:
            done.extend(q for q in range(lo, hi + 1) if q in unacked)
        new = self.sim.acknowledged(done, now)
        self.w.acked += new
        if (self.drained_after is None and self.drain_target
                and (not unacked or next(iter(unacked)) > self.drain_target)):
            self.drained_after = now - self.reconnected_at

    def pump(self) -> None:
        session, link = self.session, self.link
        if session is None or link is None or not session.ready or not self.online:
            return
        credit = session.credit_available
        if credit <= 0 or not self.sim.has_unsent:
            return
        batch = self.sim.next_batch(credit, self.w.loop.time())
        if batch:
            session.send_batch(batch)
            link.send(self.stream_id, session.data_to_send())
            self.w.batches += 1

    def _stalled(self, now: float) -> bool:
        """The agent's rule (docs/protocol.md §1): readings in flight, nothing heard for
        STALL_S. Only when the spec asks (`stall_s`, the cluster tests: a killed node): the
        load test's figures stay comparable with runs before the rule."""
        stall_s = self.w.stall_s
        return (stall_s is not None and self.link is not None and self.session is not None
                and self.session.ready and bool(self.sim.sent_at)
                and now - self.last_rx > stall_s)

    # --- pacing ---------------------------------------------------------------------------

    def start_pacing(self, first: float) -> None:
        self._timer = self.w.loop.call_at(first, self._tick)

    def _tick(self) -> None:
        now = self.w.loop.time()
        self.sim.make_due(now)
        self.w.on_tick(self, now)
        if self._stalled(now):  # the node behind the address is gone: a fresh handshake
            self.w.error("stalled")
            self.disconnect(tell_peer=False)
            self._closing = False
            self._retry_later()
        self.pump()
        if self.sim.making:
            self._timer = self.w.loop.call_at(now + self.w.send_interval_s, self._tick)


def datagrams(drivers) -> tuple[int, int]:
    """Datagrams all vehicles sent and received so far (gateway in, gateway out)."""
    links = [link for d in drivers for link in d.links]
    return (sum(link.datagrams_sent for link in links),
            sum(link.datagrams_received for link in links))


class Worker:
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
        cfg = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], idle_timeout=IDLE_TIMEOUT_S,
                                server_name="localhost", verify_mode=ssl.CERT_REQUIRED)
        cfg.load_verify_locations(cafile=spec["ca"])
        self.quic_config = cfg
        self.errors: dict[str, int] = {}
        self.connects = self.migrations = self.reconnects = self.batches = self.acked = 0
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
            "batches": self.batches, "storm": storm,
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
