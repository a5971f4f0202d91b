"""Session state machines for both ends of a geostream/1.0 session stream (sans-IO).

Bytes go in, events come out; whatever the session wants to send accumulates in an outbox
read with `data_to_send()`. The I/O layer's contract (as in websockets' sans-IO protocol):

    events = session.receive(data)      # never raises; a violation ends in a `Failed` event
    send(session.data_to_send())        # always, after each call that may queue something
    if (close := session.close_expected()) is not None:
        close the QUIC connection with close == (error code, reason)

`fail(exc)` is the one place where a protocol error becomes that sequence (the `error`
message queued, the session closed if the code is fatal); the I/O layer calls it too for
errors it finds itself (a refused hello, a second stream). `receive_data` is the parser under
`receive`: it raises `ProtocolError` and leaves the failing to the caller.

Both ends live in this one module (over 300 lines) so that the shared outbox, decoder and
close sequence (`_Session`) are written once and each end's rules read side by side.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum

import cbor2

from . import PROTOCOL_VERSION
from .codec import (
    EncodedReadings,
    FrameDecoder,
    batch_payload,
    encode,
    encode_ack,
    encode_batch,
    framed_size,
    plain_ack,
)
from .deflate import Deflater, DictionaryDeflater, Inflater, pick_dictionary
from .errors import ErrorCode, ProtocolError
from .limits import DEFAULT_CREDIT, DEFAULT_MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
from .messages import Ack, Batch, Command, CommandAck, Error, Hello, Status, Unknown, Welcome
from .ranges import RangeSet
from .zdict import DICTIONARIES

# How many answered command ids an agent remembers to de-duplicate re-sent commands.
COMMAND_MEMORY = 1024


class SessionState(Enum):
    OPENING = "opening"  # hello sent (agent) or awaited / being authenticated (gateway)
    OPEN = "open"  # welcome received (agent) or sent (gateway): batches, acks, commands flow
    CLOSED = "closed"  # a fatal error was sent or received: nothing more is parsed


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcomed:
    credit: int
    max_batch_bytes: int
    server_time_ms: int


@dataclass(frozen=True, slots=True)
class Acknowledged:
    epoch: int
    through: int
    ranges: tuple[tuple[int, int], ...]
    newly_acked: int


@dataclass(frozen=True, slots=True)
class CommandReceived:
    command: Command


@dataclass(frozen=True, slots=True)
class PeerError:
    code: int
    reason: str
    fatal: bool


@dataclass(frozen=True, slots=True)
class Failed:
    """The peer broke the protocol; the `error` is queued (and, if fatal, the session closed)."""
    code: int
    reason: str
    fatal: bool


@dataclass(frozen=True, slots=True)
class UnknownSkipped:
    """A message of a type this side does not know: answered `unknown-type` and skipped."""
    type: str


@dataclass(frozen=True, slots=True)
class HelloReceived:
    hello: Hello


@dataclass(frozen=True, slots=True)
class BatchReceived:
    batch: Batch


class _BatchReceivedSlots:
    """BatchReceived's slot without the frozen check, for `_batch_received`."""

    __slots__ = ("batch",)

    def __init__(self, batch: Batch):
        self.batch = batch  # type: ignore[misc]


def _batch_received_by_class(batch: Batch) -> BatchReceived:
    """`BatchReceived(batch)` for a 1 Hz vehicle's every batch, without the frozen
    dataclass's `object.__setattr__` (as `codec._batch` makes its Batch)."""
    ev = _BatchReceivedSlots(batch)
    ev.__class__ = BatchReceived  # type: ignore[assignment]
    return ev  # type: ignore[return-value]


def _batch_received_by_init(batch: Batch) -> BatchReceived:
    """The same event by its own constructor, where `__class__` assignment is refused (a
    compiled (mypyc) build, as `codec._batch_by_init`)."""
    return BatchReceived(batch)


try:  # `_batch_received`: the first of the two this build allows (one trial at import)
    _batch_received_by_class(Batch(0, ()))
    _batch_received = _batch_received_by_class
except TypeError:
    _batch_received = _batch_received_by_init


@dataclass(frozen=True, slots=True)
class CommandAcked:
    ack: CommandAck


@dataclass(frozen=True, slots=True)
class StatusReceived:
    status: Status


class _Session:
    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self._out = bytearray()
        self.state = SessionState.OPENING
        # `state is CLOSED`, kept as an attribute: both ends ask it for every chunk received
        self.closed = False
        self._close: tuple[int, str] | None = None

    def _open(self) -> None:
        self.state = SessionState.OPEN
        self._opened = True

    def _closed_by_peer(self) -> None:
        self.state = SessionState.CLOSED
        self.closed = True

    def receive(self, data: bytes) -> list:
        """Events for `data`; never raises: a violation is `fail`ed and ends the list as a
        `Failed` event. Nothing is parsed once the session is closed. Afterwards call
        `data_to_send()` and `close_expected()`."""
        if self.closed:
            return []
        try:
            return self.receive_data(data)
        except ProtocolError as exc:
            self.fail(exc)
            return [Failed(int(exc.code), exc.reason, exc.code.fatal)]

    def receive_data(self, data: bytes) -> list:
        raise NotImplementedError

    def close_expected(self) -> tuple[int, str] | None:
        """(error code, reason) to close the QUIC connection with after a fatal `fail`."""
        return self._close

    def has_output(self) -> bool:
        """Whether `data_to_send()` or `close_expected()` has something (the caller may skip
        both when not)."""
        return bool(self._out) or self._close is not None

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def _send(self, msg) -> None:
        self._out += encode(msg)

    def fail(self, exc: ProtocolError) -> None:
        """Queue the `error` message for a protocol violation; fatal ones close the session."""
        if self._close is not None:
            return  # failed already: the first error is the one the peer gets
        self._send(Error(code=int(exc.code), reason=exc.reason[:256], fatal=exc.code.fatal))
        if exc.code.fatal:
            self.state = SessionState.CLOSED
            self.closed = True
            self._close = (int(exc.code), exc.reason)

    def _messages(self, data: bytes):
        if self.closed:
            raise ProtocolError(ErrorCode.UNEXPECTED, "data after the session was closed")
        for msg in self._decoder.feed(data):
            if isinstance(msg, Unknown):
                self._send(Error(int(ErrorCode.UNKNOWN_TYPE), f"unknown type {msg.type!r}", False))
            yield msg


class ClientSession(_Session):
    """The agent's end: hello, batches within credit, acks applied to the in-flight set."""

    def __init__(self, vehicle: str, token: str, epoch: int, acked_through: int = 0,
                 agent: str = "fleet-agent", commands: tuple[str, ...] | None = None,
                 features: tuple[str, ...] = (), zdicts: tuple[int, ...] | None = None):
        """`zdicts`: the preset dictionaries to offer (§3.2; default every one this side
        carries; `()` speaks as an agent of revision 4 and earlier)."""
        super().__init__()
        self.epoch = epoch
        self._opened = False
        self.ready = False
        self.credit = 0
        self.max_batch_bytes = DEFAULT_MAX_BATCH_BYTES
        # how batches are compressed, once the welcome said: against its preset dictionary
        # (§3.2), else the session's DEFLATE stream (§3.1) if the gateway takes it
        self.deflater: Deflater | DictionaryDeflater | None = None
        self._sized: tuple[bytes, bytes] | None = None  # a §3.2 batch sized: (plain, frame)
        self.in_flight: set[int] = set()
        self._answered: OrderedDict[int, CommandAck] = OrderedDict()
        self._hello = Hello(vehicle=vehicle, token=token, epoch=epoch, agent=agent,
                            acked=acked_through, commands=commands, features=features,
                            zdict=tuple(DICTIONARIES) if zdicts is None else zdicts)
        self.features: tuple[str, ...] = ()  # the welcome's (revision 2)
        self._send(self._hello)

    def _open(self) -> None:
        super()._open()
        # the welcome came (stays True once the session closed): an attribute, not a
        # property, as the agent's uplink asks it before every batch it might send
        self.ready = True

    @property
    def acked_through(self) -> int:
        """The `acked` this session announced in its hello."""
        return self._hello.acked

    @property
    def credit_available(self) -> int:
        return max(0, self.credit - len(self.in_flight)) if self.ready else 0

    def receive(self, data: bytes) -> list:
        """`_Session.receive`; an ack without ranges in one whole frame (a 1 Hz agent's every
        ack) is read at fixed offsets (`plain_ack`) and takes the same checks, without the
        decoder's CBOR and message loop."""
        if self.ready and not self.closed and not self._decoder.buffered:
            ack = plain_ack(data)
            if ack is not None:
                try:
                    return [self._acknowledged(ack[0], ack[1], (), ack[2])]
                except ProtocolError as exc:
                    self.fail(exc)
                    return [Failed(int(exc.code), exc.reason, exc.code.fatal)]
        return super().receive(data)

    def _acknowledged(self, epoch: int, through: int, ranges: tuple[tuple[int, int], ...],
                      credit: int) -> Acknowledged:
        """An ack applied to the in-flight set (after the welcome); raises ProtocolError."""
        if epoch != self.epoch:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"ack for epoch {epoch}")
        if ranges:
            acked = RangeSet(ranges)
            done = {q for q in self.in_flight if q <= through or q in acked}
        else:  # the common ack: everything through one sequence number
            done = {q for q in self.in_flight if q <= through}
        self.in_flight -= done
        self.credit = credit
        return Acknowledged(epoch, through, ranges, len(done))

    def receive_data(self, data: bytes) -> list:
        # `_messages` written out (one generator less per chunk: an agent gets one per batch)
        if self.closed:
            raise ProtocolError(ErrorCode.UNEXPECTED, "data after the session was closed")
        events: list = []
        for msg in self._decoder.feed(data):
            if isinstance(msg, Welcome):
                if self.ready:
                    raise ProtocolError(ErrorCode.UNEXPECTED, "second welcome")
                if msg.v != PROTOCOL_VERSION:
                    raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"server speaks v{msg.v}")
                self.deflater = self._compression(msg)
                self._open()
                self.credit = msg.credit
                self.max_batch_bytes = msg.max_batch_bytes
                self.features = msg.features
                events.append(Welcomed(msg.credit, msg.max_batch_bytes, msg.time))
            elif isinstance(msg, Ack):
                if not self.ready:
                    raise ProtocolError(ErrorCode.UNEXPECTED, "ack before welcome")
                events.append(self._acknowledged(msg.epoch, msg.through, msg.ranges,
                                                 msg.credit))
            elif isinstance(msg, Command):
                answer = self._answered.get(msg.id)
                if answer is not None:  # a re-sent command: answer again, never run it twice
                    self._send(answer)
                else:
                    events.append(CommandReceived(msg))
            elif isinstance(msg, Error):
                if msg.fatal:
                    self._closed_by_peer()
                events.append(PeerError(msg.code, msg.reason, msg.fatal))
            elif isinstance(msg, Unknown):
                self._send(Error(int(ErrorCode.UNKNOWN_TYPE), f"unknown type {msg.type!r}", False))
                events.append(UnknownSkipped(msg.type))
            else:
                raise ProtocolError(ErrorCode.UNEXPECTED, f"{type(msg).__name__} from a server")
        return events

    def _compression(self, welcome: Welcome) -> Deflater | DictionaryDeflater | None:
        if welcome.zdict is not None:
            if welcome.zdict not in self._hello.zdict:
                raise ProtocolError(ErrorCode.MALFORMED,
                                    f"welcome picked dictionary {welcome.zdict}, not offered")
            return DictionaryDeflater(welcome.zdict)
        return Deflater() if welcome.z else None

    def send_batch(self, readings: list[dict] | EncodedReadings) -> int:
        """Queue one batch (its reading maps, or them already encoded); returns its encoded
        size. The caller keeps within credit and budget."""
        if not self.ready:
            raise RuntimeError("send_batch before welcome")
        frame = self._frame(readings, plain=readings.cbor if type(readings) is EncodedReadings
                            else None)
        self._out += frame
        if type(readings) is EncodedReadings:
            self.in_flight.update(readings.seqs)
        else:
            self.in_flight.update(r["q"] for r in readings)
        return len(frame)

    def send_status(self, status: Status) -> None:
        """Queue a status report (docs/protocol.md §3 status); only after welcome."""
        if not self.ready:
            raise RuntimeError("send_status before welcome")
        self._send(status)

    def acknowledge_command(self, command_id: int, ok: bool, detail: str = "",
                            result: dict | None = None) -> None:
        ack = CommandAck(id=command_id, ok=ok, detail=detail[:256], result=result)
        self._answered[command_id] = ack
        while len(self._answered) > COMMAND_MEMORY:
            self._answered.popitem(last=False)
        self._send(ack)

    def remember_answers(self, answered: OrderedDict[int, CommandAck]) -> None:
        """Carry the de-duplication memory over from the previous session of this agent."""
        self._answered = answered

    def batch_size(self, readings: list[dict] | EncodedReadings) -> int:
        plain = _readings_cbor(readings)
        if isinstance(self.deflater, DictionaryDeflater):
            try:
                return len(self._frame(readings, keep=True, plain=plain))
            except ValueError:  # beyond MAX_MESSAGE_BYTES: the caller asks for a smaller one
                return framed_size(len(batch_payload(self.epoch, plain, self.deflater)))
        probe = self.deflater.copy() if self.deflater is not None else None
        return framed_size(len(batch_payload(self.epoch, plain, probe)))

    def _frame(self, readings: list[dict] | EncodedReadings, keep: bool = False,
               plain: bytes | None = None) -> bytes:
        """A batch's frame, written around its readings' CBOR (`plain`). §3.2's frames depend
        on the readings alone, so the one `batch_size` made (`keep`) is sent as it is: the
        batch is compressed once, not twice."""
        if plain is None:
            plain = _readings_cbor(readings)
        sized = self._sized
        if sized is not None and sized[0] == plain:
            return sized[1]
        frame = encode_batch(self.epoch, plain, self.deflater)
        self._sized = (plain, frame) if keep else None
        return frame


def _readings_cbor(readings: list[dict] | EncodedReadings) -> bytes:
    """The batch's readings array in CBOR (as `encode` writes it inside the batch)."""
    return readings.cbor if type(readings) is EncodedReadings else cbor2.dumps(list(readings))


class ServerSession(_Session):
    """The gateway's end: one hello, then batches; acks reflect committed sequence numbers."""

    def __init__(self, credit: int = DEFAULT_CREDIT,
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES):
        super().__init__()
        self.hello: Hello | None = None
        self._opened = False
        self.credit = credit
        self.max_batch_bytes = max_batch_bytes
        self.through = 0
        self._committed = RangeSet()
        self._holding = False  # `_committed` is not empty (asked per batch: no __len__ call)
        self.max_credit_granted = credit
        self.pending = 0  # readings received and not yet acknowledged (§3 batch, §6)
        # an ack owed for commits since the last one queued: one `ack` message, with the state
        # of the moment it is queued, however many batches committed meanwhile
        self._ack_due = False
        self._decoder.inflater = Inflater(MAX_MESSAGE_BYTES)  # offered in the welcome (§3.1)

    @property
    def authenticated(self) -> bool:
        """The welcome was sent (stays True once the session closed)."""
        return self._opened

    def receive_data(self, data: bytes) -> list:
        events: list = []
        for msg in self._messages(data):
            if isinstance(msg, Hello):
                if self.hello is not None:
                    raise ProtocolError(ErrorCode.UNEXPECTED, "second hello")
                if msg.v != PROTOCOL_VERSION:
                    raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                                        f"version {msg.v} not supported")
                self.hello = msg
                self.through = msg.acked
                events.append(HelloReceived(msg))
            elif isinstance(msg, Batch):
                if not self.authenticated:
                    raise ProtocolError(ErrorCode.UNEXPECTED, "batch before welcome")
                events.append(BatchReceived(self._admit(msg)))
            elif isinstance(msg, CommandAck):
                if not self.authenticated:
                    raise ProtocolError(ErrorCode.UNEXPECTED, "command-ack before welcome")
                events.append(CommandAcked(msg))
            elif isinstance(msg, Status):
                if not self.authenticated:
                    raise ProtocolError(ErrorCode.UNEXPECTED, "status before welcome")
                events.append(StatusReceived(msg))
            elif isinstance(msg, Error):
                if msg.fatal:
                    self._closed_by_peer()
                events.append(PeerError(msg.code, msg.reason, msg.fatal))
            elif isinstance(msg, Unknown):
                events.append(UnknownSkipped(msg.type))
            else:
                raise ProtocolError(ErrorCode.UNEXPECTED, f"{type(msg).__name__} from an agent")
        return events

    def receive(self, data: bytes) -> list:
        """`_Session.receive`; a §3.2 batch in one whole frame (a 1 Hz vehicle's every batch)
        takes the decoder's direct path (`FrameDecoder.one_batch`) and the same checks,
        without the message loop."""
        if self.state is SessionState.OPEN:
            try:
                batch = self._decoder.one_batch(data)
                if batch is not None:
                    return [_batch_received(self._admit_direct(batch))]
            except ProtocolError as exc:
                self.fail(exc)
                return [Failed(int(exc.code), exc.reason, exc.code.fatal)]
        return super().receive(data)

    def one_batch(self, data: bytes) -> Batch | None:
        """The batch `receive` would report for `data` when `data` is one whole §3.2 batch
        frame that passes every check (a 1 Hz vehicle's every chunk), counted as `receive`
        counts it, without an event or a list; None for anything else, with nothing
        consumed or counted: then `receive` (which fails a batch that breaks the protocol,
        decoding it again: the decoder keeps nothing of a frame it refused)."""
        if self.state is not SessionState.OPEN:
            return None
        try:
            batch = self._decoder.one_batch(data)
        except ProtocolError:
            return None
        if batch is None:
            return None
        n = len(batch.readings)  # `_admit_direct`'s checks and count, written out
        if batch.wire_size <= self.max_batch_bytes and self.pending + n <= self.max_credit_granted:
            self.pending += n
            return batch
        return None

    def _admit_direct(self, batch: Batch) -> Batch:
        """`_admit` of a batch from the decoder's direct path: its batches name no vehicle
        and carry the hello's epoch (`expect_batches`), so `_admit`'s other two checks, then
        its count; raises ProtocolError."""
        n = len(batch.readings)
        if batch.wire_size <= self.max_batch_bytes and self.pending + n <= self.max_credit_granted:
            self.pending += n
            return batch
        return self._admit(batch)  # refuses it

    def _admit(self, msg: Batch) -> Batch:
        """A decoded batch checked against the session (its vehicle, epoch, size and the
        credit granted) and counted as pending; raises ProtocolError."""
        hello = self.hello
        assert hello is not None, "batches only after the welcome"
        if msg.vehicle is not None and msg.vehicle != hello.vehicle:
            raise ProtocolError(ErrorCode.FORBIDDEN,
                                f"batch as {msg.vehicle!r}, authenticated as {hello.vehicle!r}")
        if msg.epoch != hello.epoch:
            raise ProtocolError(ErrorCode.FORBIDDEN,
                                f"batch for epoch {msg.epoch}, not {hello.epoch}")
        if msg.wire_size > self.max_batch_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"batch of {msg.wire_size} bytes > {self.max_batch_bytes}")
        n = len(msg.readings)
        if self.pending + n > self.max_credit_granted:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"{self.pending + n} readings in flight "
                                f"> credit {self.max_credit_granted}")
        self.pending += n
        return msg

    def accept(self, now_ms: int, credit: int | None = None,
               features: tuple[str, ...] = ()) -> None:
        if self.hello is None or self.authenticated:
            raise RuntimeError("accept() needs exactly one pending hello")
        self._open()
        if credit is not None:
            self.set_credit(credit)
        # the session reads the hello's vehicle and epoch from now on, never its token (a
        # secret) or the agent's name: not kept for the connection's life (~150 bytes each)
        self.hello = replace(self.hello, token="", agent="")
        zdict = pick_dictionary(self.hello.zdict)
        if zdict is not None:  # §3.2: batches on their own; no inflater for this session
            self._decoder.inflater, self._decoder.zdict = None, zdict
            self._decoder.expect_batches(self.hello.epoch)
        self._send(Welcome(credit=self.credit, max_batch_bytes=self.max_batch_bytes, time=now_ms,
                           z=zdict is None, features=features, zdict=zdict))

    def reject(self, code: ErrorCode, reason: str) -> None:
        self.fail(ProtocolError(code, reason))

    def set_credit(self, credit: int) -> None:
        self.credit = credit
        self.max_credit_granted = max(self.max_credit_granted, credit)

    def committed(self, seqs: Iterable[int], credit: int | None = None) -> None:
        """Acknowledge sequence numbers (of one received batch) whose transaction committed.
        The `ack` is queued once for all batches committed before the next `data_to_send()`
        (or the next other message): a drain's batches of one commit cost one ack."""
        n = 0
        through, committed, holding = self.through, self._committed, self._holding
        for q in seqs:
            n += 1
            if q == through + 1 and not holding:  # in order, nothing held: the usual case
                through = q
            elif q > through:
                committed.add(q)
                holding = True
        pending = self.pending - n
        self.pending = pending if pending > 0 else 0
        if holding:
            through = committed.contiguous_from(through)
            committed.discard_through(through)
            self._holding = len(committed) > 0
        self.through = through
        if credit is not None:
            self.set_credit(credit)
        self._ack_due = True

    def committed_batch(self, batch: Batch, credit: int) -> None:
        """`committed` of one received batch's sequence numbers: a one-reading batch next in
        order with nothing held (a 1 Hz vehicle's every batch) without the loop."""
        readings = batch.readings
        if len(readings) == 1 and not self._holding:
            q = readings[0]["q"]
            if q == self.through + 1:
                self.through = q
                self.pending = self.pending - 1 if self.pending > 1 else 0
                self.credit = credit
                if credit > self.max_credit_granted:
                    self.max_credit_granted = credit
                self._ack_due = True
                return
        self.committed([r["q"] for r in readings], credit)

    def _ack(self) -> bytes:
        """The owed ack's frame, no longer owed."""
        self._ack_due = False
        assert self.hello is not None, "acks only after the hello"
        return encode_ack(self.hello.epoch, self.through,
                          self._committed if self._holding else (), self.credit)

    def _queue_ack(self) -> None:
        """The owed ack, in its place: before any message queued after the commits it covers."""
        self._out += self._ack()

    def _send(self, msg) -> None:
        if self._ack_due:
            self._queue_ack()
        super()._send(msg)

    def has_output(self) -> bool:
        return self._ack_due or bool(self._out) or self._close is not None

    def data_to_send(self) -> bytes:
        """What is queued, the owed ack included (one for all commits since the last)."""
        if self._ack_due:
            if not self._out:  # the usual: the ack alone, not copied through the outbox
                self._ack_due = False  # `_ack` written out (a connection's every ack)
                assert self.hello is not None, "acks only after the hello"
                return encode_ack(self.hello.epoch, self.through,
                                  self._committed if self._holding else (), self.credit)
            self._queue_ack()
        return super().data_to_send()

    def send_command(self, command: Command) -> None:
        self._send(command)
