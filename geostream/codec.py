"""Framing and CBOR encoding of geostream messages (docs/protocol.md §2–§4).

`encode(message) -> bytes` and `FrameDecoder.feed(data) -> list[message]`; every way a peer can
send something wrong ends in one `ProtocolError` with the documented code. Every CBOR item a
peer sends, a compressed batch's `z` included, goes through `geostream.strict_cbor` (no tags,
bounded depth) before any field is looked at; the one exception is the map around a §3.2
batch's `zd` when its bytes are exactly the form agents write (`FrameDecoder.one_batch`: three
known keys, a uint and a byte string, compared byte for byte), whose readings then go through
`strict_cbor` like any other.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import cbor2

from . import strict_cbor
from .commands import MAX_ARG_TEXT_CHARS, MAX_RESULT_BYTES, advertised_problem
from .deflate import Deflater, DictionaryDeflater, Inflater, inflate_alone
from .encoded import EncodedReadings as EncodedReadings  # (the journal imports them alone)
from .encoded import cbor_head as cbor_head
from .errors import ErrorCode, ProtocolError
from .limits import MAX_BATCH_READINGS, MAX_MESSAGE_BYTES
from .messages import (
    Ack,
    Batch,
    Command,
    CommandAck,
    Error,
    Hello,
    Message,
    Status,
    Unknown,
    Welcome,
)
from .reading_shapes import ReadingShapes
from .schema import (  # noqa: F401  (reading_problem, READING_KINDS: re-exported)
    MAX_UINT,
    READING_KINDS,
    check_reading,
    reading_problem,
    uint,
    value_problem,
)

_HEADER = struct.Struct(">I")
_VEHICLE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


def _text(m: dict, key: str, max_len: int, default: str | None = None) -> str:
    value = m.get(key, default)
    if not isinstance(value, str) or len(value) > max_len:
        raise ProtocolError(ErrorCode.MALFORMED, f"{key!r} must be text of at most {max_len}")
    return value


def _ranges(m: dict, key: str) -> tuple[tuple[int, int], ...]:
    value = m.get(key, [])
    if not isinstance(value, list):
        raise ProtocolError(ErrorCode.MALFORMED, f"{key!r} must be an array of ranges")
    out = []
    prev_last = -2
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(type(x) is int and 0 <= x <= MAX_UINT for x in item)
            or item[0] > item[1]
            or item[0] <= prev_last + 1
        ):
            raise ProtocolError(ErrorCode.MALFORMED, f"{key!r} holds an invalid range")
        out.append((item[0], item[1]))
        prev_last = item[1]
    return tuple(out)


def _inflate_readings(z: Any, inflater: Inflater | None) -> Any:
    """The readings array of a compressed batch (§3.1)."""
    if inflater is None:
        raise ProtocolError(ErrorCode.MALFORMED, "compressed batch where none was offered")
    if not isinstance(z, bytes):
        raise ProtocolError(ErrorCode.MALFORMED, "'z' must be a byte string")
    return strict_cbor.loads(inflater.piece(z), "'z'")


def _inflate_alone(zd: Any, zdict: int | None) -> Any:
    """The readings array of a batch compressed against the session's dictionary (§3.2)."""
    if zdict is None:
        raise ProtocolError(ErrorCode.MALFORMED, "'zd' batch where no dictionary was agreed")
    if not isinstance(zd, bytes):
        raise ProtocolError(ErrorCode.MALFORMED, "'zd' must be a byte string")
    raw = inflate_alone(zd, zdict, MAX_MESSAGE_BYTES)
    readings = _SHAPES.decode(raw)
    if readings is None:
        readings = strict_cbor.loads(raw, "'zd'")
        _SHAPES.learn(raw, readings)
    return readings


# The layouts of one-reading arrays seen (a 1 Hz vehicle's every batch): decoded as the strict
# decoder does, with one `struct` unpack (geostream/reading_shapes.py).
_SHAPES = ReadingShapes()


def _checked_readings(readings: Any) -> tuple[dict, ...]:
    """A batch's readings array: 1..MAX_BATCH_READINGS readings, each envelope valid, no
    sequence number twice; raises MALFORMED."""
    if type(readings) is not list or not 1 <= len(readings) <= MAX_BATCH_READINGS:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"'readings' must hold 1..{MAX_BATCH_READINGS} readings"
        )
    if len(readings) == 1:  # a 1 Hz vehicle's batch: no sequence number can repeat
        check_reading(readings[0])
        return (readings[0],)
    seen = set()
    for r in readings:
        q = check_reading(r)["q"]
        if q in seen:
            raise ProtocolError(ErrorCode.MALFORMED, f"sequence {q} twice in one batch")
        seen.add(q)
    return tuple(readings)


# A batch as agents send it once a dictionary is agreed (§3.2, written by `batch_payload`):
# the map {"t": "batch", "epoch": E, "zd": Z} with its keys in this order.
_ZD_BATCH = b"\xa3" + cbor2.dumps("t") + cbor2.dumps("batch") + cbor2.dumps("epoch")
_ZD_KEY = cbor2.dumps("zd")


def zd_batch_prefix(epoch: int) -> bytes:
    """The payload's bytes before a §3.2 batch's `zd` byte string, for a session of `epoch`
    (`FrameDecoder.expect_batches`)."""
    return _ZD_BATCH + _uint(epoch) + _ZD_KEY


def _zd_batch(frame: bytes, start: int, zdict: int | None, epoch: int) -> Batch | None:
    """The batch if what follows `start` in `frame` (one whole frame whose payload began
    with `zd_batch_prefix(epoch)`) is a byte string that ends the frame, else None. The
    map's three keys are distinct text and its values a uint and that byte string: the
    strict decoder would build the same map, so the same checks follow (the readings'
    strictly, or by a layout that gives the strict decoder's answer: `_inflate_alone`)."""
    end = len(frame)
    if start >= end or zdict is None:
        return None  # `feed` refuses it as the strict path does
    head = frame[start]
    if 0x40 <= head <= 0x57:  # the length in the head: up to 23 bytes
        start, size = start + 1, head - 0x40
    elif head == 0x58 and start + 1 < end:  # one length byte: a 1 Hz reading's 40..120 bytes
        start, size = start + 2, frame[start + 1]
    elif head == 0x59 and start + 2 < end:
        start, size = start + 3, (frame[start + 1] << 8) | frame[start + 2]
    else:
        return None
    if start + size != end:
        return None
    raw = inflate_alone(frame[start:], zdict, MAX_MESSAGE_BYTES)
    readings = _SHAPES.decode(raw)
    if readings is None:
        readings = strict_cbor.loads(raw, "'zd'")
        _SHAPES.learn(raw, readings)
        return _batch(epoch, _checked_readings(readings), end)
    # a layout's answer: a list of one map, as `_checked_readings` would take it
    return _batch(epoch, (check_reading(readings[0]),), end)


class _BatchSlots:
    """Batch's slots without the frozen check, for `_batch`."""

    __slots__ = ("epoch", "readings", "vehicle", "wire_size")

    def __init__(self, epoch: int, readings: tuple, wire_size: int):
        self.epoch, self.readings, self.vehicle, self.wire_size = (  # type: ignore[misc]
            epoch, readings, None, wire_size)


assert tuple(Batch.__dataclass_fields__) == ("epoch", "readings", "vehicle", "wire_size")


def _batch_by_class(epoch: int, readings: tuple, wire_size: int) -> Batch:
    """`Batch(epoch, readings, None, wire_size)` for a 1 Hz vehicle's every batch: a frozen
    dataclass sets each field through `object.__setattr__` (0.38 against ~0.15 µs, measured on
    this project's machine); the object becomes a Batch by `__class__` assignment between
    classes of one layout (as `backend.store.rows.made` does for rows): equal, frozen."""
    b = _BatchSlots(epoch, readings, wire_size)
    b.__class__ = Batch  # type: ignore[assignment]
    return b  # type: ignore[return-value]


def _batch_by_init(epoch: int, readings: tuple, wire_size: int) -> Batch:
    """The same Batch by its own constructor, where `__class__` assignment is refused: a
    compiled (mypyc) build, whose classes have their own layouts: docs/benchmarks.md,
    "Compiled modules (mypyc), session 15"."""
    return Batch(epoch, readings, None, wire_size)


try:  # `_batch`: the first of the two this build allows (one trial at import)
    _batch_by_class(0, (), 0)
    _batch = _batch_by_class
except TypeError:
    _batch = _batch_by_init


def _decode_map(m: dict, inflater: Inflater | None = None, wire_size: int = 0,
                zdict: int | None = None) -> Message:
    t = m.get("t")
    if t == "batch":
        if ("readings" in m) + ("z" in m) + ("zd" in m) > 1:
            raise ProtocolError(ErrorCode.MALFORMED,
                                "batch with more than one of 'readings', 'z' and 'zd'")
        if "z" in m:
            m = {**m, "readings": _inflate_readings(m["z"], inflater)}
        elif "zd" in m:
            m = {**m, "readings": _inflate_alone(m["zd"], zdict)}
        readings = _checked_readings(m.get("readings"))
        vehicle = _text(m, "vehicle", 64) if "vehicle" in m else None
        return Batch(epoch=uint(m, "epoch"), readings=readings, vehicle=vehicle,
                     wire_size=wire_size)
    if t == "ack":
        return Ack(
            epoch=uint(m, "epoch"),
            through=uint(m, "through"),
            ranges=_ranges(m, "ranges"),
            credit=uint(m, "credit"),
        )
    if t == "hello":
        vehicle = _text(m, "vehicle", 64)
        if not _VEHICLE_ID.match(vehicle):
            raise ProtocolError(ErrorCode.MALFORMED, "vehicle id must match [A-Za-z0-9._-]{1,64}")
        return Hello(
            vehicle=vehicle,
            token=_text(m, "token", 256),
            epoch=uint(m, "epoch"),
            agent=_text(m, "agent", 64, ""),
            acked=uint(m, "acked") if "acked" in m else 0,
            v=uint(m, "v"),
            commands=_advertised(m),
            features=_features(m),
            zdict=_zdict_offered(m),
        )
    if t == "welcome":
        return Welcome(
            credit=uint(m, "credit"),
            max_batch_bytes=uint(m, "max_batch_bytes"),
            time=uint(m, "time"),
            v=uint(m, "v"),
            z=m.get("z") is True,
            features=_features(m),
            zdict=_zdict_id(m["zdict"]) if "zdict" in m else None,
        )
    if t == "error":
        fatal = m.get("fatal")
        if not isinstance(fatal, bool):
            raise ProtocolError(ErrorCode.MALFORMED, "'fatal' must be a bool")
        return Error(code=uint(m, "code"), reason=_text(m, "reason", 256, ""), fatal=fatal)
    if t == "command":
        args = m.get("args", {})
        if not isinstance(args, dict) or (
                problem := value_problem(args, MAX_ARG_TEXT_CHARS)) is not None:
            raise ProtocolError(ErrorCode.MALFORMED, "'args' must be a map of plain values"
                                + (f", not {problem}" if isinstance(args, dict) else ""))
        return Command(id=uint(m, "id"), name=_text(m, "name", 64), args=args)
    if t == "command-ack":
        ok = m.get("ok")
        if not isinstance(ok, bool):
            raise ProtocolError(ErrorCode.MALFORMED, "'ok' must be a bool")
        return CommandAck(id=uint(m, "id"), ok=ok, detail=_text(m, "detail", 256, ""),
                          result=_result(m))
    if t == "status":
        return _status(m)
    if isinstance(t, str):
        return Unknown(type=t[:32])
    raise ProtocolError(ErrorCode.MALFORMED, "message without text 't'")


def _advertised(m: dict) -> tuple[str, ...] | None:
    """A hello's advertised command set (revision 2), None when absent."""
    if "commands" not in m:
        return None
    if (problem := advertised_problem(m["commands"])) is not None:
        raise ProtocolError(ErrorCode.MALFORMED, problem)
    return tuple(m["commands"])


def _features(m: dict) -> tuple[str, ...]:
    value = m.get("features", [])
    if not isinstance(value, list) or len(value) > MAX_FEATURES or not all(
            isinstance(f, str) and 0 < len(f) <= MAX_FEATURE_CHARS for f in value):
        raise ProtocolError(ErrorCode.MALFORMED, f"'features' must be an array of at most "
                            f"{MAX_FEATURES} names of 1..{MAX_FEATURE_CHARS} characters")
    return tuple(value)


def _zdict_id(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_ZDICT_ID:
        raise ProtocolError(ErrorCode.MALFORMED, f"a dictionary id must be a uint ≤ {MAX_ZDICT_ID}")
    return value


def _zdict_offered(m: dict) -> tuple[int, ...]:
    """A hello's preset dictionaries (revision 5, §3.2); ids this side lacks are kept here and
    ignored when one is picked."""
    value = m.get("zdict", [])
    if not isinstance(value, list) or len(value) > MAX_ZDICT_OFFERED:
        raise ProtocolError(ErrorCode.MALFORMED,
                            f"'zdict' must be an array of at most {MAX_ZDICT_OFFERED} ids")
    return tuple(_zdict_id(v) for v in value)


def _result(m: dict) -> dict | None:
    """A command answer's structured result (revision 2)."""
    if "result" not in m:
        return None
    result = m["result"]
    if not isinstance(result, dict) or (problem := value_problem(result)) is not None:
        raise ProtocolError(ErrorCode.MALFORMED, "'result' must be a map of plain values"
                            + (f", not {problem}" if isinstance(result, dict) else ""))
    if len(cbor2.dumps(result)) > MAX_RESULT_BYTES:
        raise ProtocolError(ErrorCode.MALFORMED, f"'result' exceeds {MAX_RESULT_BYTES} bytes")
    return result


# revision 5 (§3.2): an agent carries a few dictionaries, each named by a small id
MAX_ZDICT_OFFERED = 8
MAX_ZDICT_ID = 65535

# revision 2 feature lists (hello, welcome): a handful of short names
MAX_FEATURES = 16
MAX_FEATURE_CHARS = 32

# docs/protocol.md §3 status: a report stays ~100 bytes
MAX_STATUS_SOURCES = 16
MAX_STATUS_TEXT = 32


def _status(m: dict) -> Status:
    sources = m.get("sources", {})
    if not isinstance(sources, dict) or len(sources) > MAX_STATUS_SOURCES or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_STATUS_TEXT
            and len(v) <= MAX_STATUS_TEXT for k, v in sources.items()):
        raise ProtocolError(ErrorCode.MALFORMED,
                            f"'sources' must map ≤ {MAX_STATUS_SOURCES} names to states")
    return Status(
        time=uint(m, "time"), backlog=uint(m, "backlog"),
        journal_bytes=uint(m, "journal_bytes"), sources=tuple(sorted(sources.items())),
        oldest=uint(m, "oldest") if "oldest" in m else None,
        dropped=uint(m, "dropped") if "dropped" in m else 0,
        rtt_ms=uint(m, "rtt_ms") if "rtt_ms" in m else None,
        uptime_s=uint(m, "uptime_s") if "uptime_s" in m else None,
    )


def _to_map(msg: Message, deflater: Deflater | DictionaryDeflater | None = None) -> dict:
    if isinstance(msg, Batch):
        out = {"t": "batch", "epoch": msg.epoch}
        if deflater is not None:
            out[deflater.KEY] = deflater.piece(cbor2.dumps(list(msg.readings)))
        else:
            out["readings"] = list(msg.readings)
        if msg.vehicle is not None:
            out["vehicle"] = msg.vehicle
        return out
    if isinstance(msg, Ack):
        return {
            "t": "ack",
            "epoch": msg.epoch,
            "through": msg.through,
            "ranges": [list(r) for r in msg.ranges],
            "credit": msg.credit,
        }
    if isinstance(msg, Hello):
        out = {"t": "hello", "v": msg.v, "vehicle": msg.vehicle, "token": msg.token,
               "epoch": msg.epoch, "agent": msg.agent, "acked": msg.acked}
        if msg.commands is not None:
            out["commands"] = list(msg.commands)
        if msg.features:
            out["features"] = list(msg.features)
        if msg.zdict:
            out["zdict"] = list(msg.zdict)
        return out
    if isinstance(msg, Welcome):
        out = {"t": "welcome", "v": msg.v, "credit": msg.credit,
               "max_batch_bytes": msg.max_batch_bytes, "time": msg.time}
        if msg.z:
            out["z"] = True
        if msg.features:
            out["features"] = list(msg.features)
        if msg.zdict is not None:
            out["zdict"] = msg.zdict
        return out
    if isinstance(msg, Error):
        return {"t": "error", "code": int(msg.code), "reason": msg.reason, "fatal": msg.fatal}
    if isinstance(msg, Command):
        return {"t": "command", "id": msg.id, "name": msg.name, "args": msg.args}
    if isinstance(msg, CommandAck):
        out = {"t": "command-ack", "id": msg.id, "ok": msg.ok, "detail": msg.detail}
        if msg.result is not None:
            out["result"] = msg.result
        return out
    if isinstance(msg, Status):
        return {"t": "status", **msg.as_json()}
    raise TypeError(f"not a geostream message: {msg!r}")


def encode_payload(msg: Message, deflater: Deflater | DictionaryDeflater | None = None) -> bytes:
    return cbor2.dumps(_to_map(msg, deflater))


_BATCH_T = cbor2.dumps("t") + cbor2.dumps("batch") + cbor2.dumps("epoch")
_READINGS_KEY = cbor2.dumps("readings")
_VEHICLE_KEY = cbor2.dumps("vehicle")
# a batch map's head, without / with "vehicle", and its first key and value
_BATCH3, _BATCH4 = b"\xa3" + _BATCH_T, b"\xa4" + _BATCH_T
_BYTES = 0x40  # major type 2: a byte string
_UINT, _UINT_END = 0x00, 1 << 64  # major type 0: an unsigned integer (below 2^64)
_KEY_CBOR = {key: cbor2.dumps(key) for key in ("z", "zd")}  # the compressed readings' keys


def batch_payload(epoch: int, readings_cbor: bytes,
                  deflater: Deflater | DictionaryDeflater | None = None,
                  vehicle: str | None = None) -> bytes:
    """A batch's CBOR payload from its readings array already encoded: byte for byte
    `encode_payload(Batch(epoch, readings, vehicle), deflater)` when `readings_cbor` is
    `cbor2.dumps(list(readings))` (CBOR items nest as they are: the map is written around
    the array, or around the array's DEFLATE piece, instead of encoding the readings again)."""
    epoch_cbor = cbor_head(_UINT, epoch) if 0 <= epoch < _UINT_END else cbor2.dumps(epoch)
    head = _BATCH3 if vehicle is None else _BATCH4
    if deflater is not None:
        z = deflater.piece(readings_cbor)
        parts = [head, epoch_cbor, _KEY_CBOR[deflater.KEY], cbor_head(_BYTES, len(z)), z]
    else:
        parts = [head, epoch_cbor, _READINGS_KEY, readings_cbor]
    if vehicle is not None:
        parts += (_VEHICLE_KEY, cbor2.dumps(vehicle))
    return b"".join(parts)


def encode_batch(epoch: int, readings_cbor: bytes,
                 deflater: Deflater | DictionaryDeflater | None = None) -> bytes:
    """One framed batch from its encoded readings array (`batch_payload`, then `encode`'s
    frame and bound)."""
    payload = batch_payload(epoch, readings_cbor, deflater)
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return _HEADER.pack(len(payload)) + payload


def encode(msg: Message, deflater: Deflater | DictionaryDeflater | None = None) -> bytes:
    """One framed message: 4-byte big-endian length + CBOR map.

    With a `deflater` a batch's readings go compressed: as the next piece of the session's
    DEFLATE stream (`Deflater`, §3.1; the caller then must send the frame) or on their own
    against a preset dictionary (`DictionaryDeflater`, §3.2).
    """
    payload = encode_payload(msg, deflater)
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return _HEADER.pack(len(payload)) + payload


_ACK_EPOCH = b"\xa5" + cbor2.dumps("t") + cbor2.dumps("ack") + cbor2.dumps("epoch")
_ACK_THROUGH = cbor2.dumps("through")
_ACK_NO_RANGES_CREDIT = cbor2.dumps("ranges") + b"\x80" + cbor2.dumps("credit")
_UINT8 = tuple(bytes((n,)) if n < 24 else bytes((24, n)) for n in range(256))
_UINT16, _UINT32, _UINT64 = struct.Struct(">BH"), struct.Struct(">BI"), struct.Struct(">BQ")


def _uint(n: int) -> bytes:
    """A CBOR uint in the shortest form (as cbor2 writes it); `cbor_head(0, n)` unrolled."""
    if n < 256:
        return _UINT8[n]
    if n < 65536:
        return _UINT16.pack(25, n)
    if n < 4294967296:
        return _UINT32.pack(26, n)
    return _UINT64.pack(27, n)


def encode_ack(epoch: int, through: int, ranges, credit: int) -> bytes:
    """`encode(Ack(...))` without building the message object first: the same bytes, for
    the gateway's one ack per commit and connection. The usual one (no ranges: everything
    through one sequence number) is written around its three numbers, 1.3 → 0.5 µs."""
    if not ranges:  # the epoch and the credit are small: their one-byte forms looked up here
        payload = (_ACK_EPOCH + (_UINT8[epoch] if 0 <= epoch < 256 else _uint(epoch))
                   + _ACK_THROUGH + _uint(through) + _ACK_NO_RANGES_CREDIT
                   + (_UINT8[credit] if 0 <= credit < 256 else _uint(credit)))
        return _HEADER.pack(len(payload)) + payload
    payload = cbor2.dumps({"t": "ack", "epoch": epoch, "through": through,
                           "ranges": [[first, last] for first, last in ranges],
                           "credit": credit})
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return _HEADER.pack(len(payload)) + payload


# the least value of each longer CBOR uint head (24: 1 byte follows, 25: 2, 26: 4, 27: 8):
# smaller ones have a shorter form, which is the only one `encode_ack` writes
_UINT_LEAST = {24: (1, 24), 25: (2, 256), 26: (4, 65536), 27: (8, 4294967296)}
# where an ack's epoch begins, and the key bytes (with their length) after each of its numbers
_ACK_FIRST = _HEADER.size + len(_ACK_EPOCH)
_ACK_AFTER = ((_ACK_THROUGH, len(_ACK_THROUGH)),
              (_ACK_NO_RANGES_CREDIT, len(_ACK_NO_RANGES_CREDIT)), (b"", 0))


def plain_ack(frame: bytes) -> tuple[int, int, int] | None:
    """(epoch, through, credit) of a frame that is exactly what `encode_ack` writes for an ack
    without ranges (the gateway's usual one: a 1 Hz agent's every ack), read at its fixed
    keys without decoding CBOR; None for anything else, which the general decoder reads (and
    refuses or not) as before. Exactly: each number in its shortest form and at most MAX_UINT,
    the frame's length as its header says, not a byte more."""
    if not frame.startswith(_ACK_EPOCH, _HEADER.size):
        return None
    p, end, values = _ACK_FIRST, len(frame), []
    try:
        for key, key_len in _ACK_AFTER:
            head = frame[p]
            if head < 24:
                value, p = head, p + 1
            else:
                width, least = _UINT_LEAST[head]
                value = int.from_bytes(frame[p + 1:p + 1 + width])
                p += 1 + width
                if value < least or p > end:
                    return None
            values.append(value)
            if key_len:
                if not frame.startswith(key, p):
                    return None
                p += key_len
    except (IndexError, KeyError):
        return None
    epoch, through, credit = values
    if (p != end or _HEADER.unpack_from(frame)[0] != end - _HEADER.size
            or epoch > MAX_UINT or through > MAX_UINT or credit > MAX_UINT):
        return None
    return epoch, through, credit


def decode_payload(payload: bytes, inflater: Inflater | None = None,
                   wire_size: int = 0, zdict: int | None = None) -> Message:
    """One message from its CBOR payload; a batch records `wire_size`, its framed size."""
    m = strict_cbor.loads(payload, "message")
    if not isinstance(m, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "message is not a CBOR map")
    return _decode_map(m, inflater, wire_size, zdict)


def framed_size(n_payload: int) -> int:
    return _HEADER.size + n_payload


class FrameDecoder:
    """Reassembles length-prefixed messages from stream bytes.

    `feed(data)` returns the complete messages; it raises `ProtocolError` on the first bad one
    (all such errors are fatal: framing can no longer be trusted). A message of unknown type is
    returned as `Unknown` so the session can answer `unknown-type` and go on.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 inflater: Inflater | None = None):
        self._buf = bytearray()
        self._max = max_message_bytes
        # compressed batches: a decoder given the session's inflater accepts §3.1's pieces,
        # one given a dictionary id §3.2's (the session sets them at its welcome)
        self.inflater = inflater
        self.zdict: int | None = None
        self._batch_prefix: bytes | None = None  # `expect_batches`
        self._batch_epoch = 0
        self._zd_at = 0  # where a batch's `zd` byte string begins in its frame

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def expect_batches(self, epoch: int) -> None:
        """Batches of `epoch` against the agreed dictionary (`zdict`) will come: `one_batch`
        recognises theirs by the payload's first bytes."""
        self._batch_prefix = zd_batch_prefix(epoch)
        self._batch_epoch = epoch
        self._zd_at = _HEADER.size + len(self._batch_prefix)

    def one_batch(self, data: bytes) -> Batch | None:
        """The batch if `data` is exactly one whole frame of a §3.2 batch of the expected
        epoch and nothing is buffered (a 1 Hz vehicle's every batch), as `feed` would return
        it; else None (then `feed`). Raises as `feed` does for a bad batch."""
        prefix = self._batch_prefix
        if prefix is None or self._buf or not data.startswith(prefix, _HEADER.size):
            return None
        n = len(data) - _HEADER.size
        if _HEADER.unpack_from(data)[0] != n or n > self._max:
            return None
        return _zd_batch(data, self._zd_at, self.zdict, self._batch_epoch)

    def feed(self, data: bytes) -> list[Message]:
        if not self._buf and len(data) > _HEADER.size:
            # the common case, one whole message in one piece (an ack, a batch): decoded as
            # the loop below would, without copying it through the buffer
            (n,) = _HEADER.unpack_from(data)
            if len(data) == _HEADER.size + n and n <= self._max:
                return [decode_payload(data[_HEADER.size:], self.inflater, len(data),
                                       self.zdict)]
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= _HEADER.size:
            (n,) = _HEADER.unpack_from(self._buf)
            if not 1 <= n <= self._max:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"frame length {n} outside 1..{self._max}")
            if len(self._buf) < _HEADER.size + n:
                break
            payload = bytes(self._buf[_HEADER.size : _HEADER.size + n])
            del self._buf[: _HEADER.size + n]
            out.append(decode_payload(payload, self.inflater, _HEADER.size + n, self.zdict))
        return out
