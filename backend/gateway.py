"""QUIC gateway: authenticates vehicles, validates batches, acks only after commit.

The pipeline for one batch reads top to bottom in `_store_batch`: validate → write (group
commit) → acknowledge → publish to the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived

from geostream import ALPN
from geostream.codec import reading_problem
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Batch
from geostream.session import BatchReceived, HelloReceived, PeerError, ServerSession

from .hub import Hub, position_feature
from .store.base import AuthResult, DeadLetter, Store, StoredReading
from .writer import BatchWriter

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 180.0
# How often revocations made by `python -m backend vehicles revoke` reach open connections.
REVOCATION_POLL_S = 2.0
# Authentication must finish quickly: a peer that never sends hello is dropped.
HELLO_TIMEOUT_S = 10.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Gateway:
    """Shared state of all connections: store, writer, hub, open sessions per vehicle."""

    def __init__(self, store: Store, writer: BatchWriter, hub: Hub):
        self.store = store
        self.writer = writer
        self.hub = hub
        self.connections: dict[str, set[GatewayProtocol]] = {}
        self.stats = {"connections": 0, "auth_failures": 0, "protocol_errors": 0,
                      "batches": 0, "readings": 0, "invalid_readings": 0}
        self._server = None
        self._revocation_task: asyncio.Task | None = None

    async def start(self, host: str, port: int, certfile: str, keyfile: str) -> None:
        cfg = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                idle_timeout=IDLE_TIMEOUT_S)
        cfg.load_cert_chain(certfile, keyfile)
        self._server = await serve(
            host, port, configuration=cfg,
            create_protocol=lambda *a, **kw: GatewayProtocol(*a, gateway=self, **kw),
        )
        self._revocation_task = asyncio.get_running_loop().create_task(self._watch_revocations())
        log.info("gateway listening on udp %s:%d (ALPN %s)", host, port, ALPN)

    async def stop(self) -> None:
        if self._revocation_task:
            self._revocation_task.cancel()
        for conns in list(self.connections.values()):
            for proto in list(conns):
                proto.close_connection(0, "server shutting down")
        if self._server:
            self._server.close()

    async def _watch_revocations(self) -> None:
        while True:
            await asyncio.sleep(REVOCATION_POLL_S)
            try:
                revoked = await self.store.revoked_vehicles()
            except Exception as exc:
                log.warning("cannot read revocations: %s", exc)
                continue
            for vehicle in revoked & self.connections.keys():
                for proto in list(self.connections.get(vehicle, ())):
                    proto.refuse(ErrorCode.REVOKED, "credential revoked")

    def register(self, vehicle: str, proto: GatewayProtocol) -> None:
        self.connections.setdefault(vehicle, set()).add(proto)

    def unregister(self, vehicle: str | None, proto: GatewayProtocol) -> None:
        if vehicle and vehicle in self.connections:
            self.connections[vehicle].discard(proto)
            if not self.connections[vehicle]:
                del self.connections[vehicle]


class GatewayProtocol(QuicConnectionProtocol):
    def __init__(self, *args, gateway: Gateway, **kwargs):
        super().__init__(*args, **kwargs)
        self.gateway = gateway
        self.session = ServerSession()
        self.stream_id: int | None = None
        self.vehicle: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        gateway.stats["connections"] += 1
        self._hello_timer = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT_S, self._hello_timeout)

    # --- aioquic callback -----------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, ConnectionTerminated):
            self._hello_timer.cancel()
            self.gateway.unregister(self.vehicle, self)
            for t in self._tasks:
                t.cancel()

    def _stream_data(self, event: StreamDataReceived) -> None:
        if self._closing:
            return
        if self.stream_id is None:
            self.stream_id = event.stream_id
        elif event.stream_id != self.stream_id:
            self._fail(ProtocolError(ErrorCode.UNEXPECTED, "one session stream per connection"))
            return
        try:
            events = self.session.receive_data(event.data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for ev in events:
            if isinstance(ev, HelloReceived):
                self._spawn(self._authenticate(ev.hello))
            elif isinstance(ev, BatchReceived):
                self._spawn(self._store_batch(ev.batch))
            elif isinstance(ev, PeerError):
                log.info("%s reports error %d: %s", self.vehicle, ev.code, ev.reason)
        self._flush()
        if event.end_stream:
            self.close_connection(0, "session ended by agent")

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("connection task failed", exc_info=task.exception())
            self.refuse(ErrorCode.INTERNAL, "internal error")

    # --- pipeline -------------------------------------------------------------------------

    async def _authenticate(self, hello) -> None:
        result = await self.gateway.store.authenticate(hello.vehicle, hello.token)
        self._hello_timer.cancel()
        if result is not AuthResult.OK:
            self.gateway.stats["auth_failures"] += 1
            log.warning("vehicle %r refused: %s", hello.vehicle, result.value)
            code = ErrorCode.REVOKED if result is AuthResult.REVOKED else ErrorCode.AUTH_FAILED
            self.refuse(code, "credential revoked" if result is AuthResult.REVOKED
                        else "unknown vehicle or wrong token")
            return
        self.vehicle = hello.vehicle
        self.gateway.register(hello.vehicle, self)
        self.session.accept(_now_ms())
        self._flush()
        log.info("vehicle %s connected (epoch %d, acked %d)", hello.vehicle, hello.epoch,
                 hello.acked)

    async def _store_batch(self, batch: Batch) -> None:
        vehicle, now = self.vehicle, _now_ms()
        good: list[StoredReading] = []
        dead: list[DeadLetter] = []
        for r in batch.readings:
            problem = reading_problem(r)
            if problem is None:
                good.append(StoredReading.from_wire(vehicle, batch.epoch, r, now))
            else:
                dead.append(DeadLetter(vehicle, batch.epoch, r["q"], r, problem, now))
        if dead:
            self.gateway.stats["invalid_readings"] += len(dead)
            self.session.fail(ProtocolError(ErrorCode.INVALID_READING,
                                            f"{len(dead)} invalid: {dead[0].error}"))
        await self.gateway.writer.submit(good, dead)
        self.gateway.stats["batches"] += 1
        self.gateway.stats["readings"] += len(good)
        if self._closing:
            return
        self.session.committed(r["q"] for r in batch.readings)
        self._flush()
        self._publish(good)

    def _publish(self, readings: list[StoredReading]) -> None:
        newest = None
        for r in readings:
            if r.kind == "pos" and (newest is None or r.time_ms > newest.time_ms):
                newest = r
        if newest is not None:
            self.gateway.hub.position(newest.vehicle_id, newest.time_ms, position_feature(
                newest.vehicle_id, newest.time_ms, newest.lat, newest.lon, newest.speed_kmh,
                newest.course, newest.seq))

    # --- output ---------------------------------------------------------------------------

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and self.stream_id is not None:
            self._quic.send_stream_data(self.stream_id, data)
            self.transmit()

    def _fail(self, exc: ProtocolError) -> None:
        self.gateway.stats["protocol_errors"] += 1
        log.warning("protocol error from %s: %s", self.vehicle or "unauthenticated peer", exc)
        self.session.fail(exc)
        self._flush()
        if exc.code.fatal:
            self.close_connection(int(exc.code), exc.reason)

    def refuse(self, code: ErrorCode, reason: str) -> None:
        self._fail(ProtocolError(code, reason))

    def _hello_timeout(self) -> None:
        if not self.session.authenticated:
            self.refuse(ErrorCode.UNEXPECTED, f"no hello within {HELLO_TIMEOUT_S:.0f}s")

    def close_connection(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._quic.close(error_code=code, reason_phrase=reason[:100])
        self.transmit()
