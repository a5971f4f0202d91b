"""The gateway round that bench_gateway_path.py and bench_store_path.py measure, without sockets.

N vehicles, each a sans-IO `QuicConnection` (of the seam's library `lib`) with a geostream
`ClientSession`, send one reading per second at their own phase into the gateway's real UDP
edge (backend/gateway_edge.py) and its `GatewayProtocol` objects, whose datagrams go to an
in-memory transport; behind them the real writer, store (`open_store`, default: SQLite in a
temporary file, durable commits), alert engine with the default rules, and hub. `bare=True`:
the same clients against the library's own `QuicConnectionProtocol` answering each batch with
an ack-sized reply (the baseline). Gateway CPU = process CPU − the clients' thread CPU
(measured around every client call).
"""

from __future__ import annotations

import asyncio
import cProfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from backend.alerts import AlertEngine
from backend.alerts.rules import parse_rules
from backend.gateway import Gateway
from backend.gateway_conn import GatewayProtocol
from backend.gateway_edge import EdgeServer
from backend.hub import Hub
from backend.quic_tuning import delay_acks
from backend.store.sqlite import SqliteStore
from backend.writer import DEFAULT_INTERVAL_S, BatchWriter
from geostream import ALPN
from geostream.clock import wall_ms
from geostream.limits import IDLE_TIMEOUT_S
from geostream.quic import protocol_class
from geostream.session import Acknowledged, ClientSession
from loadtest.fleet import SimVehicle

SERVER = ("127.0.0.1", 4433)
# the agent's ACK delay at 1 s pacing (geostream.quic_acks.ack_delay_for(1.0))
CLIENT_ACK_DELAY_S = 1.5
# an ack message of one reading is ~20 bytes on the wire (geostream codec)
BARE_REPLY = b"\x00" * 20
# Not measured: each vehicle's first evaluation replays from the store, the writer warms up.
WARMUP_S = 2


class _Wire:
    """The gateway side's DatagramTransport: datagrams land in the client's inbox (the bare
    protocol's: one vehicle's; the gateway edge's: each by its address)."""

    def __init__(self, inbox: list | None = None):
        self.inbox = inbox
        self.inboxes: dict = {}
        self.sent = 0

    def sendto(self, data, addr=None) -> None:
        self.sent += 1
        (self.inbox if self.inbox is not None else self.inboxes[addr]).append(bytes(data))

    def get_extra_info(self, name, default=None):
        return default

    def close(self) -> None:
        pass


class _Echo:
    """The bare library (a mixin on its `QuicConnectionProtocol`): every chunk of stream data
    is answered with an ack-sized reply."""

    lib = None  # set on the class protocol_class builds
    replies = 0  # per connection once it answered: one per batch

    def quic_event_received(self, event) -> None:
        if isinstance(event, self.lib.StreamDataReceived):
            self.replies += 1
            self._quic.send_stream_data(event.stream_id, BARE_REPLY)
            self.lib.ack_with_data(self._quic)
            self.transmit()


class _Vehicle:
    """One simulated vehicle: client QUIC connection, session, readings, inbox."""

    def __init__(self, lib, i: int, client_cfg, token: str, start: float, bare: bool):
        self.id = f"bench-{i:05d}"
        self.addr = ("127.0.0.1", 20000 + i)
        self.sim = SimVehicle(self.id, token, epoch=1, rate_hz=1.0, start=start,
                              wall_ms_at_start=wall_ms(), seed=i)
        self.q = 0
        self.bare = bare
        self.lib = lib
        self.quic = lib.QuicConnection(configuration=client_cfg)
        lib.advertise_max_ack_delay(self.quic, CLIENT_ACK_DELAY_S)
        self.session = ClientSession(self.id, token, epoch=1)
        self.inbox: list[bytes] = []
        self.stream: int | None = None
        self.acked = 0
        self.handshaken = False
        self.proto = None

    def pump(self, now: float) -> list[bytes]:
        """Receive what came in; return the datagrams to send."""
        for data in self.inbox:
            self.quic.receive_datagram(data, SERVER, now=now)
        self.inbox.clear()
        timer = self.quic.get_timer()
        if timer is not None and timer <= now:
            self.quic.handle_timer(now)
        while (ev := self.quic.next_event()) is not None:
            if isinstance(ev, self.lib.HandshakeCompleted):
                self.handshaken = True
            elif isinstance(ev, self.lib.StreamDataReceived) and not self.bare:
                for e in self.session.receive(ev.data):
                    if isinstance(e, Acknowledged):
                        self.acked += e.newly_acked
        data = self.session.data_to_send()
        if data:
            if self.stream is None:
                self.stream = self.quic.get_next_available_stream_id()
            self.lib.ack_with_data(self.quic)
            self.quic.send_stream_data(self.stream, data)
        return [d for d, _ in self.quic.datagrams_to_send(now=now)]


class Run:
    def __init__(self, lib, n: int, certs: dict, bare: bool, profile: cProfile.Profile | None,
                 interval_s: float = DEFAULT_INTERVAL_S,
                 open_store: Callable[[Path], object] | None = None):
        """`open_store(tmp)`: the store behind the gateway (None: SQLite in `tmp`)."""
        self.lib, self.n, self.certs, self.bare, self.prof = lib, n, certs, bare, profile
        self.interval_s = interval_s
        self.open_store = open_store or (
            lambda tmp: SqliteStore(str(tmp / f"bench-{lib.NAME}-{bare}.db")))
        self.client_cpu = 0.0
        self.datagrams_in = 0
        self.profiling = False  # only the measured seconds, not the warm-up

    def _client(self, fn, *args):
        """A client-side call, its CPU booked to the clients (and kept out of the profile)."""
        if self.profiling:
            self.prof.disable()
        t = time.thread_time()
        try:
            return fn(*args)
        finally:
            self.client_cpu += time.thread_time() - t
            if self.profiling:
                self.prof.enable()

    def _deliver(self, v: _Vehicle, datagrams: list[bytes]) -> None:
        if self.bare:
            for d in datagrams:
                self.datagrams_in += 1
                v.proto.datagram_received(d, v.addr)
            return
        now = self.loop.time()
        # one socket wakeup: one read (the edge's `receive_many`, else `receive` each, as an
        # edge without it read), one flush at the tick's end
        self.datagrams_in += len(datagrams)
        receive_many = getattr(self.edge, "receive_many", None)
        if receive_many is not None:
            receive_many([(d, v.addr) for d in datagrams], now)
        else:
            for d in datagrams:
                self.edge.receive(d, v.addr, now)
        self.edge.flush_soon()

    def _sent(self) -> int:
        if self.bare:
            return sum(v.proto._transport.sent for v in self.vehicles)
        return self.wire.sent

    async def setup(self, tmp: Path) -> None:
        loop = asyncio.get_running_loop()
        lib = self.lib
        self.server_cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                                idle_timeout=IDLE_TIMEOUT_S)
        self.server_cfg.load_cert_chain(self.certs["cert"], self.certs["key"])
        client_cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                           idle_timeout=IDLE_TIMEOUT_S, server_name="localhost")
        client_cfg.load_verify_locations(cafile=self.certs["ca"])
        self.store = self.open_store(tmp)
        await self.store.open()
        self.writer = BatchWriter(self.store, interval_s=self.interval_s)
        self.writer.start()
        self.alerts = AlertEngine(self.store, parse_rules({}))
        self.hub = Hub()
        self.gateway = Gateway(self.store, self.writer, self.hub, alerts=self.alerts,
                               quic_library=lib.NAME)
        self.loop = loop
        self.edge = EdgeServer(
            lib, configuration=self.server_cfg,
            create_protocol=lambda quic, edge: GatewayProtocol(quic, edge, gateway=self.gateway))
        self.wire = _Wire()
        self.edge.connection_made(self.wire)
        tokens = [await self.store.add_vehicle(f"bench-{i:05d}") for i in range(self.n)]
        await self.alerts.start(wall_ms())
        start = loop.time()
        self.vehicles = [_Vehicle(lib, i, client_cfg, tokens[i], start, self.bare)
                         for i in range(self.n)]
        for v in self.vehicles:
            self.wire.inboxes[v.addr] = v.inbox
            self._connect(v, loop.time())
        for _ in range(400):  # handshake, hello, welcome: bounded
            await asyncio.sleep(0.005)
            for v in self.vehicles:
                self._deliver(v, v.pump(loop.time()))
            if all(v.session.ready for v in self.vehicles) or (
                    self.bare and all(v.handshaken for v in self.vehicles)):
                break
        else:
            raise RuntimeError("sessions did not open")
        for v in self.vehicles:
            lib.delay_acks_up_to(v.quic, CLIENT_ACK_DELAY_S)

    def _connect(self, v: _Vehicle, now: float) -> None:
        v.quic.connect(SERVER, now=now)
        first = [d for d, _ in v.quic.datagrams_to_send(now=now)]
        lib = self.lib
        if self.bare:
            odcid = lib.destination_cid(first[0], 8)
            quic = lib.QuicConnection(configuration=self.server_cfg,
                                      original_destination_connection_id=odcid)
            delay_acks(lib, quic)
            echo = protocol_class(lib, _Echo)
            echo.lib = lib
            v.proto = echo(quic)
            v.proto.connection_made(_Wire(v.inbox))
        self._deliver(v, first)

    async def measure(self, seconds: float, warmup: int = WARMUP_S) -> dict:
        loop = asyncio.get_running_loop()
        await self._drive(warmup)  # first evaluations replay from the store, first commits
        await asyncio.sleep(0.5)  # the warm-up's last acks
        for v in self.vehicles:
            self._client(v.pump, loop.time())
        if self.prof:
            self.prof.enable()
            self.profiling = True
        t0_cpu, t0_client = time.process_time(), self.client_cpu
        t0_store = _store_cpu()
        in0 = self.datagrams_in
        out0 = self._sent()
        acked0 = sum(self._acked(v) for v in self.vehicles)
        sent = await self._drive(int(seconds))
        await asyncio.sleep(0.5)  # the last acks
        for v in self.vehicles:
            self._client(v.pump, loop.time())
        if self.prof:
            self.profiling = False
            self.prof.disable()
        cpu = time.process_time() - t0_cpu
        store = _store_cpu() - t0_store
        client = self.client_cpu - t0_client
        acked = sum(self._acked(v) for v in self.vehicles) - acked0
        out = self._sent() - out0
        return {"sent": sent, "acked": acked, "gateway_ms": (cpu - client) * 1000 / max(1, acked),
                "client_ms": client * 1000 / max(1, acked),
                "store_ms": store * 1000 / max(1, acked),
                "in": (self.datagrams_in - in0) / max(1, acked), "out": out / max(1, acked)}

    async def _drive(self, seconds: int) -> int:
        """Every vehicle sends one reading per second at its own phase; returns how many."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        for second in range(seconds):
            for i, v in enumerate(self.vehicles):  # each vehicle at its own phase
                at = start + second + i / self.n
                if (delay := at - loop.time()) > 0:
                    await asyncio.sleep(delay)
                self._client(self._send_one, v, loop.time())
                sent += 1
                self._deliver(v, self._client(v.pump, loop.time()))
        return sent

    def _send_one(self, v: _Vehicle, now: float) -> None:
        if self.bare:  # the same bytes on the wire as a one-reading batch
            v.session._out += b"\x00" * 110
            return
        v.q += 1
        v.session.send_batch([v.sim.wire_reading(v.q)])

    def _acked(self, v: _Vehicle) -> int:
        if self.bare:
            return v.proto.replies  # one reply per batch
        return v.acked

    async def close(self) -> None:
        protos = set(self.edge._connections.values()) if not self.bare else ()
        tasks = [t for p in protos for t in p.in_flight()]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await self.gateway.ingest.settled(10)  # commits, acks, the alert consumer
        await self.writer.stop()
        await self.alerts.flush()
        await self.store.close()


def _store_cpu() -> float:
    """CPU seconds of the SQLite store's write thread (part of the gateway's CPU)."""
    return sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident))
               for t in threading.enumerate()
               if t.name.startswith("sqlite-store") and t.ident is not None)


async def one(lib, n: int, seconds: float, certs: dict, bare: bool, tmp: Path,
              profile: cProfile.Profile | None = None,
              interval_s: float = DEFAULT_INTERVAL_S) -> dict:
    run = Run(lib, n, certs, bare, profile, interval_s)
    await run.setup(tmp)
    result = await run.measure(seconds)
    result["alerts"] = dict(run.alerts.stats)
    await run.close()
    return result
