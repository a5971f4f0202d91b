"""One vehicle's QUIC connection at the gateway: session stream, batch pipeline, output.

A batch is validated here (rows, and dead letters for the invalid readings) and handed to the
gateway's `Ingest` (backend/gateway_ingest.py), which commits the batches of all connections
together and calls `acknowledge` once each committed; publishing and alerts happen there, once
per event-loop tick for all vehicles.
Protocol errors go through the session's one close sequence (`ServerSession.fail`, then
`_flush`: send what is queued, close the connection if the session expects it). What all
connections share (store, writer, hub, credit, commands) is `backend.gateway.Gateway`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from geostream.clock import wall_ms
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Batch, Command
from geostream.schema import ACTION, json_safe
from geostream.session import (
    BatchReceived,
    CommandAcked,
    Failed,
    HelloReceived,
    PeerError,
    ServerSession,
    StatusReceived,
    UnknownSkipped,
)

from .gateway_edge import EdgeConnection, EdgeServer
from .gateway_rows import validate_batch
from .quic_tuning import delay_acks
from .store.base import AuthResult, DeadLetter, StoredReading

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("backend.gateway")

# Authentication must finish quickly: a peer that never sends hello is dropped. The time counts
# from the end of the handshake: counted from the first packet, a gateway busy with a reconnect
# storm dropped the handshakes it was itself slow to finish (the load tester saw 2,023 of 1,000
# vehicles' attempts refused this way, each retried from scratch).
HELLO_TIMEOUT_S = 10.0
# A peer whose handshake does not complete is dropped after this (neither QUIC library has a
# handshake timeout of its own, only the 240 s idle timeout).
HANDSHAKE_TIMEOUT_S = 60.0


class _NoTimer:
    """The hello deadline once it is spent (the hello came): a cancelled `TimerHandle` kept
    for the connection's life is ~200 bytes per connected vehicle; this one is shared."""

    __slots__ = ()

    def cancel(self) -> None:
        """Nothing is armed."""


_NO_TIMER = _NoTimer()


class GatewayProtocol(EdgeConnection):
    """One vehicle's connection: its session stream and the pipeline of its batches, on the
    gateway's UDP edge (backend/gateway_edge.py: `transmit` sends at the end of the tick)."""

    def __init__(self, quic, edge: EdgeServer, *, gateway: Gateway):
        super().__init__(quic, edge)
        lib = self._lib
        delay_acks(lib, self._quic)
        lib.trim_new_connection(self._quic)
        if gateway.cluster is not None:
            gateway.cluster.adopt(lib, self._quic)
        self.gateway = gateway
        self.session = ServerSession()
        self.stream_id: int | None = None
        self.vehicle: str | None = None
        # its rare tasks (hello, status, command answers): a set only while any runs (an
        # empty set is 216 bytes per connected vehicle)
        self._tasks: set[asyncio.Task] | None = None
        self._closing = False
        gateway.stats.connections += 1
        self._hello_timer: asyncio.TimerHandle | _NoTimer = (
            asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT_S, self._hello_timeout))

    # --- QUIC library callback -----------------------------------------------------------------

    def quic_event_received(self, event) -> None:
        lib = self._lib
        if isinstance(event, lib.StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, lib.HandshakeCompleted):
            lib.trim_after_handshake(self._quic)
            if not self.session.authenticated:  # the hello deadline starts now
                self._hello_timer.cancel()
                self._hello_timer = asyncio.get_running_loop().call_later(
                    HELLO_TIMEOUT_S, self._hello_timeout)
        elif isinstance(event, lib.ConnectionTerminated):
            self._closing = True  # nothing more is sent on it (its batches are not acked)
            self._hello_timer.cancel()
            self.gateway.unregister(self.vehicle, self)
            for t in self._tasks or ():
                t.cancel()

    def _stream_data(self, event) -> None:
        if self._closing or self.gateway.draining:
            return
        if self.stream_id is None:
            self.stream_id = event.stream_id
        elif event.stream_id != self.stream_id:
            self._fail(ProtocolError(ErrorCode.UNEXPECTED, "one session stream per connection"))
            return
        session = self.session
        batch = session.one_batch(event.data)
        if batch is not None:  # a 1 Hz vehicle's every chunk: one whole batch
            self._batch(batch)
        elif not self._events(session.receive(event.data)):
            return
        if session.has_output():  # a batch's ack waits for its commit: usually nothing
            self._flush()
        if event.end_stream:
            self.close_connection(0, "session ended by agent")

    def _batch(self, batch: Batch) -> None:
        """A received batch validated (its invalid readings answered invalid-reading, kept
        as dead letters and acknowledged), on its way to its commit."""
        gw = self.gateway
        now, applier = wall_ms(), gw.driver_actions
        good, dead, actions = validate_batch(batch, self.vehicle_id, now, gw.ts_window,
                                             applier is not None, gw.stats.invalid)
        if dead:
            self.session.fail(ProtocolError(ErrorCode.INVALID_READING,
                                            f"{len(dead)} invalid: {dead[0].error}"))
        if actions and applier is not None:  # rare: own task
            self._spawn(self._with_actions(batch, good, dead, now))
        else:
            gw.ingest.batch(self, batch, good, dead)

    def _events(self, events: list) -> bool:
        """The session's events for a chunk; False if it broke the protocol (dropped whole:
        the session queued the error, sent here)."""
        if events and type(events[-1]) is Failed:
            self._count_failure(events[-1].reason, events[-1].code)
            self._flush()
            return False
        for ev in events:
            if type(ev) is BatchReceived:
                self._batch(ev.batch)
            elif isinstance(ev, HelloReceived):
                # the deadline is for a peer that sends no hello: this one is answered however
                # long the store takes (under load its queue outlasted the deadline, and
                # vehicles that had sent a hello were refused and reconnected from scratch)
                self._hello_timer.cancel()
                self._hello_timer = _NO_TIMER
                self._spawn(self._authenticate(ev.hello))
            elif isinstance(ev, CommandAcked):
                self._spawn(self.gateway.downlink.answered(self.vehicle_id, ev.ack.id,
                                                           ev.ack.ok, ev.ack.detail,
                                                           ev.ack.result))
            elif isinstance(ev, StatusReceived):
                self._spawn(self.gateway.status_received(self.vehicle_id, ev.status))
            elif isinstance(ev, PeerError):
                log.info("%s reports error %d: %s", self.vehicle, ev.code, ev.reason)
            elif isinstance(ev, UnknownSkipped):  # answered unknown-type (not fatal)
                self.gateway.stats.unknown_type_skipped()
        return True

    def in_flight(self) -> set[asyncio.Task]:
        """This connection's running tasks (hellos, status reports, command answers; its
        batches are the gateway's `Ingest`'s): the gateway waits for them at a graceful stop."""
        return set(self._tasks or ())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None
        if not task.cancelled() and task.exception() is not None:
            log.error("connection task failed", exc_info=task.exception())
            self.refuse(ErrorCode.INTERNAL, "internal error")

    # --- pipeline -------------------------------------------------------------------------

    async def _authenticate(self, hello) -> None:
        result = await self.gateway.store.authenticate(hello.vehicle, hello.token)
        self._hello_timer.cancel()
        self._hello_timer = _NO_TIMER
        if result is not AuthResult.OK:
            self.gateway.stats.auth_failures += 1
            log.warning("vehicle %r refused: %s", hello.vehicle, result.value)
            code = ErrorCode.REVOKED if result is AuthResult.REVOKED else ErrorCode.AUTH_FAILED
            self.refuse(code, "credential revoked" if result is AuthResult.REVOKED
                        else "unknown vehicle or wrong token")
            return
        if self._closing:
            return
        self.vehicle = hello.vehicle
        self.gateway.register(hello.vehicle, self)
        self.session.accept(wall_ms(), credit=self.gateway.credit(),
                            features=("act", "stops", "images") if self.gateway.driver_actions
                            else ())
        self._flush()
        log.info("vehicle %s connected (epoch %d, acked %d)", hello.vehicle, hello.epoch,
                 hello.acked)
        # after the welcome has left, so commands never delay data (registered first: a
        # command stored meanwhile is sent by the downlink's send, or here, or both); the
        # advertised set first, so what is pending is checked against what the agent runs now
        await self.gateway.downlink.advertised_by(hello.vehicle, hello.commands)
        await self.gateway.downlink.send_pending(hello.vehicle, self)

    async def _with_actions(self, batch: Batch, good: list[StoredReading],
                            dead: list[DeadLetter], now: int) -> None:
        """A batch holding driver actions (docs/protocol.md §4 "act"): the gateway's applier
        first, then the batch's way to its commit and ack like any other. The applier applies
        each once per key, so a re-sent batch changes nothing; when it cannot (its store is
        away) the batch is not acknowledged and the agent sends it again."""
        apply = self.gateway.driver_actions
        assert apply is not None, "only batches for an applier come here"
        try:
            refused = await apply(self.vehicle_id, [r for r in good if r.kind == ACTION], now)
        except Exception as exc:
            log.warning("driver actions of %s not applied (the agent re-sends): %s",
                        self.vehicle, exc)
            self.refuse(ErrorCode.INTERNAL, "driver actions not applied; send them again")
            return
        if refused:  # image parts the assembly refused: dead letters, acknowledged
            why = dict(refused)
            by_seq = {r["q"]: r for r in batch.readings}
            good = [r for r in good if r.seq not in why]
            dead = [*dead, *(DeadLetter(self.vehicle_id, batch.epoch, q, json_safe(by_seq[q]),
                                        text, now) for q, text in why.items())]
            for _ in why:
                self.gateway.stats.invalid("image")
            self.session.fail(ProtocolError(ErrorCode.INVALID_READING,
                                            f"{len(why)} invalid: {next(iter(why.values()))}"))
        if not self._closing:
            self.gateway.ingest.batch(self, batch, good, dead)

    def committed(self, batch: Batch, credit: int) -> bool:
        """Queue the ack for a committed batch, with the credit of the moment (the caller's,
        computed once for a commit's batches); False if closing. The caller sends it
        (`flush_acks`) with the others of the same commit, so a drain's several batches per
        connection leave in one transmit."""
        if self._closing:
            return False
        self.session.committed_batch(batch, credit)
        return True

    def flush_acks(self) -> None:
        """Send the acks `acknowledge(…, flush=False)` queued (unless closing meanwhile)."""
        if not self._closing:
            self._flush()

    # --- output ---------------------------------------------------------------------------

    def _flush(self) -> None:
        """Send what the session queued; close the connection if the session expects it."""
        data = self.session.data_to_send()
        if data and self.stream_id is not None:
            self._quic.send_stream_data(self.stream_id, data)
            self._lib.ack_with_data(self._quic)  # the batch's QUIC ACK rides with its geostream ack
            self.transmit()
        # only a closed session expects a close (asked thus: a connection's every ack)
        if self.session.closed and (close := self.session.close_expected()) is not None:
            self.close_connection(*close)

    def _fail(self, exc: ProtocolError) -> None:
        """An error found here (refusal, second stream, timeout) takes the session's path."""
        self._count_failure(exc.reason, exc.code)
        self.session.fail(exc)
        self._flush()

    def _count_failure(self, reason: str, code: int) -> None:
        self.gateway.stats.session_failed(ErrorCode(code))
        log.warning("protocol error from %s: %s: %s", self.vehicle or "unauthenticated peer",
                    ErrorCode(code).label, reason)

    @property
    def vehicle_id(self) -> str:
        """The authenticated vehicle: batches, reports and command answers come only after
        the welcome (the session refuses them before)."""
        assert self.vehicle is not None, "no vehicle before the hello was accepted"
        return self.vehicle

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
        if self.session.authenticated:
            return
        if not self._handshaken:  # a peer that never finished: not one that sent no hello
            self.refuse(ErrorCode.UNEXPECTED,
                        f"handshake not complete within {HANDSHAKE_TIMEOUT_S:.0f}s")
        else:
            self.refuse(ErrorCode.UNEXPECTED, f"no hello within {HELLO_TIMEOUT_S:.0f}s")

    def close_connection(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        # closed by us: no longer this vehicle's connection, even while QUIC drains (3 PTO)
        self.gateway.unregister(self.vehicle, self)
        self.close(code, reason[:100])

