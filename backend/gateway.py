"""QUIC gateway: authenticates vehicles, validates batches, acks only after commit.

The path of one batch is `_store_batch`, a pipeline of named steps, each taking `now`:
validate → rows → store (group commit) → acknowledge → publish to the hub → alerts.
Protocol errors go through the session's one close sequence (`ServerSession.fail`, then
`_flush`: send what is queued, close the connection if the session expects it).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
)
from prometheus_client import Histogram

from geostream import ALPN
from geostream.backoff import Backoff
from geostream.errors import ErrorCode, ProtocolError
from geostream.limits import DEFAULT_CREDIT, IDLE_TIMEOUT_S
from geostream.messages import Batch, Command, Status
from geostream.quic_acks import ack_with_data
from geostream.schema import reading_problem
from geostream.session import (
    BatchReceived,
    CommandAcked,
    Failed,
    HelloReceived,
    PeerError,
    ServerSession,
    StatusReceived,
)

from .alerts import NoAlerts
from .hub import Hub, position_feature
from .metrics import ACK_BUCKETS_S
from .quic_tuning import delay_acks, enlarge_socket_buffers, shrink_handshake_buffers
from .store.base import (
    AuthResult,
    DeadLetter,
    Store,
    StoredCommand,
    StoredReading,
    newest_positions,
)
from .store.base import now_ms as _now_ms
from .tickets import TicketStore
from .writer import BatchWriter, WriterStopped

log = logging.getLogger(__name__)

# Flow control (docs/protocol.md §6): credit shrinks as the writer's backlog grows, so a slow
# database slows the vehicles instead of growing gateway memory.
BACKLOG_HIGH = 20_000
MIN_CREDIT = 64
MAX_CREDIT = DEFAULT_CREDIT
# Time for the last acks to leave before connections close at shutdown (loopback to a few RTTs).
ACK_GRACE_S = 0.3
# How often revocations made by `python -m backend vehicles revoke` reach open connections.
REVOCATION_POLL_S = 2.0
# Authentication must finish quickly: a peer that never sends hello is dropped. The time counts
# from the end of the handshake: counted from the first packet, a gateway busy with a reconnect
# storm dropped the handshakes it was itself slow to finish (the load tester saw 2,023 of 1,000
# vehicles' attempts refused this way, each retried from scratch).
HELLO_TIMEOUT_S = 10.0
# A peer whose handshake does not complete is dropped after this (aioquic has no handshake
# timeout of its own, only the 240 s idle timeout).
HANDSHAKE_TIMEOUT_S = 60.0
# Reading a vehicle's pending commands after its welcome is retried while the store is away.
COMMAND_RETRY_MIN_S = 1.0
COMMAND_RETRY_MAX_S = 30.0


def credit_for(backlog_rows: int, vehicles: int, backlog_high: int = BACKLOG_HIGH) -> int:
    """Credit per vehicle from the writer backlog (docs/protocol.md §6)."""
    room = (backlog_high - backlog_rows) // max(1, vehicles)
    return max(MIN_CREDIT, min(MAX_CREDIT, room))


class Gateway:
    """Shared state of all connections: store, writer, hub, open sessions per vehicle."""

    def __init__(self, store: Store, writer: BatchWriter, hub: Hub,
                 backlog_high: int = BACKLOG_HIGH, ticket_file: str = ":memory:",
                 alerts=None, cluster=None):
        self.backlog_high = backlog_high
        self.draining = False
        self.store = store
        self.writer = writer
        self.hub = hub
        # alert rules run after each commit (backend/alerts/); NoAlerts where none are wanted
        self.alerts = alerts if alerts is not None else NoAlerts()
        self.connections: dict[str, set[GatewayProtocol]] = {}
        self.stats = {"connections": 0, "auth_failures": 0, "protocol_errors": 0,
                      "batches": 0, "readings": 0, "invalid_readings": 0}
        # batch received → ack sent (GET /metrics); not in a global registry
        self.ack_latency = Histogram("fleet_ack_latency_seconds", "Batch received to ack sent",
                                     buckets=ACK_BUCKETS_S, registry=None)
        self._server = None
        self._revocation_task: asyncio.Task | None = None
        # session tickets for resumption / 0-RTT (docs/protocol.md §8), opened by start()
        self.ticket_file = ticket_file
        self.tickets: TicketStore | None = None
        # behind a router (backend/cluster/, docs/scaling.md): a ClusterNode, else None
        self.cluster = cluster
        # in a cluster: tells the other nodes a vehicle has a new command (backend/fanout.py)
        self.command_wake = None

    def credit(self) -> int:
        return credit_for(self.writer.stats.backlog_rows, len(self.connections),
                          self.backlog_high)

    # --- downlink commands (docs/protocol.md §3 command) ----------------------------------

    async def send_command(self, vehicle: str, name: str, args: dict | None = None) -> int:
        """Store a command for a vehicle and send it on its open connections; it is sent again
        after each new welcome until the agent acknowledges it."""
        command_id = await self.store.add_command(vehicle, name, dict(args or {}))
        if any(p.can_send for p in self.connections.get(vehicle, ())):
            # counted first, so an answer is never on record with the command unsent
            await self._commands_sent(vehicle, [command_id])
            cmd = Command(id=command_id, name=name, args=dict(args or {}))
            for proto in list(self.connections.get(vehicle, ())):
                proto.send_command(cmd)
        elif self.command_wake is not None:
            self.command_wake(vehicle)  # another node may hold the vehicle (docs/scaling.md §7)
        return command_id

    async def wake_commands(self, vehicle: str) -> None:
        """Another node stored a command for `vehicle`: if this node holds its connection,
        send what is pending (the agent answers a repeated command from its memory)."""
        for proto in list(self.connections.get(vehicle, ())):
            if proto.can_send:
                await self.send_pending_commands(vehicle, proto)

    async def send_pending_commands(self, vehicle: str, proto: GatewayProtocol) -> None:
        """After a welcome: every command of the vehicle not yet acknowledged, oldest first.
        While the store is away this retries as long as the connection lasts."""
        backoff = Backoff(COMMAND_RETRY_MIN_S, COMMAND_RETRY_MAX_S)
        while True:
            try:
                pending: list[StoredCommand] = await self.store.pending_commands(vehicle)
                break
            except Exception as exc:
                delay = backoff.next()
                log.warning("cannot read commands for %s (retry in %.0fs): %s", vehicle, delay,
                            exc)
                await asyncio.sleep(delay)
        if not pending or not proto.can_send:
            return
        await self._commands_sent(vehicle, [c.id for c in pending])
        for c in pending:
            proto.send_command(Command(id=c.id, name=c.name, args=c.args))

    async def _commands_sent(self, vehicle: str, ids: list[int]) -> None:
        try:
            await self.store.commands_sent(ids, _now_ms())
        except Exception as exc:  # bookkeeping only: the command itself is stored
            log.warning("cannot count commands sent to %s: %s", vehicle, exc)

    async def status_received(self, vehicle: str, status: Status) -> None:
        """The agent's report replaces its last one (protocol.md §3 status)."""
        try:
            await self.store.save_vehicle_status(vehicle, status.as_json(), _now_ms())
        except Exception as exc:  # bookkeeping only: the next report comes in 30 s
            log.warning("cannot keep the status of %s: %s", vehicle, exc)

    async def command_acked(self, vehicle: str, command_id: int, ok: bool, detail: str) -> None:
        """Record the agent's answer; if the store fails, the command stays pending and its
        next re-send is answered again by the agent (from its memory)."""
        try:
            first = await self.store.answer_command(vehicle, command_id, ok, detail, _now_ms())
        except Exception as exc:
            log.warning("cannot record answer of %s to command %d: %s", vehicle, command_id, exc)
            return
        if first:
            log.info("vehicle %s answered command %d: ok=%s %s", vehicle, command_id, ok, detail)

    async def start(self, host: str, port: int, certfile: str, keyfile: str) -> None:
        cfg = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                idle_timeout=IDLE_TIMEOUT_S)
        cfg.load_cert_chain(certfile, keyfile)
        if self.ticket_file.startswith(("postgresql://", "postgres://")):
            from .cluster.tickets import SharedTicketStore  # every node's (docs/scaling.md)

            self.tickets = await SharedTicketStore(self.ticket_file).start()
        else:
            self.tickets = TicketStore(self.ticket_file)
        server_kwargs = dict(
            configuration=cfg,
            create_protocol=lambda *a, **kw: GatewayProtocol(*a, gateway=self, **kw),
            session_ticket_fetcher=self.tickets.pop,
            session_ticket_handler=self.tickets.add,
        )
        if self.cluster is None:
            self._server = await serve(host, port, **server_kwargs)
        else:
            self._server = await self.cluster.serve(host, port, **server_kwargs)
        enlarge_socket_buffers(self._server)
        self._revocation_task = asyncio.get_running_loop().create_task(self._watch_revocations())
        log.info("gateway listening on udp %s:%d (ALPN %s)", host, port, ALPN)

    def stop_accepting(self) -> None:
        """First step of a graceful stop: new sessions and new batches are ignored (agents keep
        them in their journals); batches already submitted still commit and get their acks."""
        self.draining = True

    async def finish_in_flight(self, timeout: float = 5.0) -> None:
        """Wait until every submitted batch has been acknowledged (or the timeout passed)."""
        tasks = [t for conns in self.connections.values() for p in conns for t in p._tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        # one more loop turn per connection so the ack packets leave before CONNECTION_CLOSE
        await asyncio.sleep(ACK_GRACE_S)

    async def stop(self) -> None:
        if self._revocation_task:
            self._revocation_task.cancel()
        for conns in list(self.connections.values()):
            for proto in list(conns):
                proto.close_connection(0, "server shutting down")
        if self._server:
            self._server.close()
        if self.tickets is not None:
            self.tickets.close()
            self.tickets = None

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
        self.alerts.forget(vehicle)  # it may have sent through another backend meanwhile

    def unregister(self, vehicle: str | None, proto: GatewayProtocol) -> None:
        if vehicle and vehicle in self.connections:
            self.connections[vehicle].discard(proto)
            if not self.connections[vehicle]:
                del self.connections[vehicle]


class GatewayProtocol(QuicConnectionProtocol):
    def __init__(self, *args, gateway: Gateway, **kwargs):
        super().__init__(*args, **kwargs)
        delay_acks(self._quic)
        if gateway.cluster is not None:
            gateway.cluster.adopt(self._quic)
        self.gateway = gateway
        self.session = ServerSession()
        self.stream_id: int | None = None
        self.vehicle: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        gateway.stats["connections"] += 1
        self._hello_timer = asyncio.get_running_loop().call_later(
            HANDSHAKE_TIMEOUT_S, self._hello_timeout)

    # --- aioquic callback -----------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, HandshakeCompleted):
            shrink_handshake_buffers(self._quic)
            if not self.session.authenticated:  # the hello deadline starts now
                self._hello_timer.cancel()
                self._hello_timer = asyncio.get_running_loop().call_later(
                    HELLO_TIMEOUT_S, self._hello_timeout)
        elif isinstance(event, ConnectionTerminated):
            self._hello_timer.cancel()
            self.gateway.unregister(self.vehicle, self)
            for t in self._tasks:
                t.cancel()

    def _stream_data(self, event: StreamDataReceived) -> None:
        if self._closing or self.gateway.draining:
            return
        if self.stream_id is None:
            self.stream_id = event.stream_id
        elif event.stream_id != self.stream_id:
            self._fail(ProtocolError(ErrorCode.UNEXPECTED, "one session stream per connection"))
            return
        events = self.session.receive(event.data)
        if events and isinstance(events[-1], Failed):
            # a chunk that breaks the protocol is dropped whole; the session queued the error
            self._count_failure(events[-1].reason, events[-1].code)
            self._flush()
            return
        for ev in events:
            if isinstance(ev, HelloReceived):
                self._spawn(self._authenticate(ev.hello))
            elif isinstance(ev, BatchReceived):
                self._spawn(self._store_batch(ev.batch))
            elif isinstance(ev, CommandAcked):
                self._spawn(self.gateway.command_acked(self.vehicle, ev.ack.id, ev.ack.ok,
                                                       ev.ack.detail))
            elif isinstance(ev, StatusReceived):
                self._spawn(self.gateway.status_received(self.vehicle, ev.status))
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
        if self._closing:
            return
        self.vehicle = hello.vehicle
        self.gateway.register(hello.vehicle, self)
        self.session.accept(_now_ms(), credit=self.gateway.credit())
        self._flush()
        log.info("vehicle %s connected (epoch %d, acked %d)", hello.vehicle, hello.epoch,
                 hello.acked)
        # after the welcome has left, so commands never delay data (registered first: a
        # command stored meanwhile is sent by send_command, or here, or both)
        await self.gateway.send_pending_commands(hello.vehicle, self)

    async def _store_batch(self, batch: Batch) -> None:
        """The pipeline of one batch; each step is named for what it does."""
        now, started = _now_ms(), time.monotonic()
        good, dead = self._validate(batch, now)  # validate → rows
        if not await self._store(good, dead):
            return
        if self._acknowledge(batch):
            self.gateway.ack_latency.observe(time.monotonic() - started)
            self._publish(good)
        # after the ack has left, so rules never delay it; also while closing (committed)
        await self._alerts(good, now)

    def _validate(self, batch: Batch, now: int) -> tuple[list[StoredReading], list[DeadLetter]]:
        """Rows to store, and the invalid readings as dead letters (answered invalid-reading,
        stored apart and acknowledged, so the agent never re-sends them)."""
        good: list[StoredReading] = []
        dead: list[DeadLetter] = []
        for r in batch.readings:
            problem = reading_problem(r)
            if problem is None:
                good.append(StoredReading.from_wire(self.vehicle, batch.epoch, r, now))
            else:
                dead.append(DeadLetter(self.vehicle, batch.epoch, r["q"], r, problem, now))
        if dead:
            self.gateway.stats["invalid_readings"] += len(dead)
            self.session.fail(ProtocolError(ErrorCode.INVALID_READING,
                                            f"{len(dead)} invalid: {dead[0].error}"))
        return good, dead

    async def _store(self, good: list[StoredReading], dead: list[DeadLetter]) -> bool:
        """Group commit through the writer; False if the gateway is stopping (not committed,
        so not acknowledged: the agent re-sends it to the next gateway)."""
        try:
            await self.gateway.writer.submit(good, dead)
        except WriterStopped:
            return False  # (Unstorable, by contrast, stays an internal error)
        self.gateway.stats["batches"] += 1
        self.gateway.stats["readings"] += len(good)
        return True

    def _acknowledge(self, batch: Batch) -> bool:
        """The ack for a committed batch, with the credit of the moment; False if closing."""
        if self._closing:
            return False
        self.session.committed((r["q"] for r in batch.readings), credit=self.gateway.credit())
        self._flush()
        return True

    async def _alerts(self, good: list[StoredReading], now: int) -> None:
        await self.gateway.alerts.on_committed(good, now)

    def _publish(self, readings: list[StoredReading]) -> None:
        for newest in newest_positions(readings).values():
            self.gateway.hub.position(newest.vehicle_id, newest.time_ms, position_feature(
                newest.vehicle_id, newest.time_ms, newest.lat, newest.lon, newest.speed_kmh,
                newest.course_deg, newest.seq))

    # --- output ---------------------------------------------------------------------------

    def _flush(self) -> None:
        """Send what the session queued; close the connection if the session expects it."""
        data = self.session.data_to_send()
        if data and self.stream_id is not None:
            self._quic.send_stream_data(self.stream_id, data)
            ack_with_data(self._quic)  # the batch's QUIC ACK rides with its geostream ack
            self.transmit()
        if (close := self.session.close_expected()) is not None:
            self.close_connection(*close)

    def _fail(self, exc: ProtocolError) -> None:
        """An error found here (refusal, second stream, timeout) takes the session's path."""
        self._count_failure(exc.reason, exc.code)
        self.session.fail(exc)
        self._flush()

    def _count_failure(self, reason: str, code: int) -> None:
        self.gateway.stats["protocol_errors"] += 1
        log.warning("protocol error from %s: %s: %s", self.vehicle or "unauthenticated peer",
                    ErrorCode(code).label, reason)

    @property
    def can_send(self) -> bool:
        """The session is authenticated and not closing."""
        return self.session.authenticated and not self._closing

    def send_command(self, cmd: Command) -> bool:
        """Send a command on this session if it is up; True if it was sent."""
        if self.can_send:
            self.session.send_command(cmd)
            self._flush()
            return True
        return False

    def refuse(self, code: ErrorCode, reason: str) -> None:
        self._fail(ProtocolError(code, reason))

    def _hello_timeout(self) -> None:
        if not self.session.authenticated:
            self.refuse(ErrorCode.UNEXPECTED, f"no hello within {HELLO_TIMEOUT_S:.0f}s")

    def close_connection(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        # closed by us: no longer this vehicle's connection, even while QUIC drains (3 PTO)
        self.gateway.unregister(self.vehicle, self)
        self._quic.close(error_code=code, reason_phrase=reason[:100])
        self.transmit()
