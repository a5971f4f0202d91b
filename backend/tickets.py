"""The gateway's TLS session tickets, kept in a file of its own (docs/protocol.md §8).

A ticket outlives a gateway restart (graceful or kill -9), so an agent that reconnects afterwards
resumes with its hello in 0-RTT instead of paying a full handshake. Each ticket is good once:
its use is recorded before `pop` returns it. The QUIC library calls `add` (every handshake
issues a ticket, before the flight that carries it leaves) and `pop` (every resumed one)
synchronously on the event loop, inside the handshake.

The file is a log: one record per ticket issued and one per ticket used, each appended with a
single `write` (in the kernel's page cache when it returns: it survives a kill -9 of the
process, as SQLite's WAL commits with synchronous=NORMAL did; a power cut may lose the last
records: one full handshake, or a used ticket good once more, a replayed 0-RTT `hello` that
§8 shows harmless). An index in memory (label → the record's place) answers `pop`, which
reads the record back with one `pread`. Each record carries a CRC-32, so a record torn by a
power cut ends the log where it begins (the rest is cut off). When the used and dropped
records outnumber the live ones, the live ones are written to a new file that replaces the
log (fsynced, renamed). **Why not SQLite, as before**: a commit per ticket (its WAL frames
and locks) cost the gateway 350-420 µs of CPU per handshake in place, 12-15 % of a full
handshake's and more of a resumed one's (an `add` and a `pop`), against ~0.1 ms for a record
appended here (docs/benchmarks.md, "What a handshake costs each side, session 18"). A file
SQLite wrote (schema 1, before session 18) is converted when it is opened, its tickets kept.

The file holds resumption secrets: it is created mode 0600 and kept apart from the readings
store. Losing it only costs every agent one full handshake, so an unreadable file is replaced.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import os
import sqlite3
import struct
import zlib
from typing import Any

from geostream.clock import wall_ms
from geostream.tickets import utc

log = logging.getLogger(__name__)

# Tickets kept: the most recently issued, ~150 bytes each on disk and ~150 in the index. The
# QUIC library issues one per connection, valid for a day: this covers many thousand vehicles.
MAX_TICKETS = 50_000
# Expired tickets are looked for among this many oldest at every `add` (all tickets live as
# long, so the oldest expire first: issue order is expiry order).
PRUNE_OLDEST = 8
# The log is rewritten with its live tickets once it holds this many more records than twice
# the live ones (the rewrite of 50,000 tickets takes ~0.1 s, once per ~50,000 handshakes).
COMPACT_SLACK = 4096
MAGIC = b"fleet-agent session tickets 2\n"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_ADD, _USE = 1, 2
_HEAD = struct.Struct("!BI")  # kind, payload length
_CRC = struct.Struct("!I")  # CRC-32 of the head and the payload
# label length, not valid after / before (µs since the epoch, UTC), age_add, cipher suite,
# max early data (-1: none), secret length, server name length (0xFFFF: none)
_FIELDS = struct.Struct("!HqqIHqBH")
_NO_NAME = 0xFFFF
_MAX_RECORD = 1 << 16
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def _us(t: datetime.datetime) -> int:
    """A ticket time (aware, or naive UTC as qh3 keeps it) in epoch microseconds, exactly."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return (t - _EPOCH) // _MICROSECOND


def _payload(label: bytes, after: int, before: int, age_add: int, suite: int,
             early: int | None, secret: bytes, name: str | None, extensions: list) -> bytes:
    """An ADD record's payload."""
    name_bytes = b"" if name is None else name.encode()
    return b"".join((
        _FIELDS.pack(len(label), after, before, age_add, suite, -1 if early is None else early,
                     len(secret), _NO_NAME if name is None else len(name_bytes)),
        label, secret, name_bytes,
        json.dumps([[k, v.hex()] for k, v in extensions]).encode() if extensions else b""))


def _ticket_payload(t) -> bytes:
    return _payload(t.ticket, _us(t.not_valid_after), _us(t.not_valid_before), t.age_add,
                    int(t.cipher_suite), t.max_early_data_size, t.resumption_secret,
                    t.server_name, t.other_extensions)


def _record(kind: int, payload: bytes) -> bytes:
    head = _HEAD.pack(kind, len(payload))
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


def _label_of(payload: bytes) -> bytes:
    return payload[_FIELDS.size:_FIELDS.size + _FIELDS.unpack_from(payload)[0]]


def _after_of(payload: bytes) -> int:
    return _FIELDS.unpack_from(payload)[1]


class TicketStore:
    """Session tickets by label in the file `path` (":memory:" for a throw-away store), each
    usable once, expired ones pruned, at most `limit` kept."""

    def __init__(self, path: str, limit: int = MAX_TICKETS, lib=None):
        """`lib`: the QUIC library whose `SessionTicket` `pop` returns (geostream/quic/)."""
        self.path = path
        self.lib = lib
        self.limit = limit
        # label → (offset of its ADD payload, payload length, not valid after µs), oldest first
        self._index: dict[bytes, tuple[int, int, int]] = {}
        self._memory: dict[bytes, bytes] = {}  # ":memory:": label → payload
        self._fd: int | None = None
        self._size = 0  # bytes in the log
        self._records = 0  # records in the log
        self._lib: Any = None  # the QUIC library module, resolved at the first `pop`
        if path != ":memory:":
            self._open()

    # --- the file ---------------------------------------------------------------------------

    def _open(self) -> None:
        _private_dir(self.path)
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if data.startswith(_SQLITE_MAGIC):
            self._rewrite(_from_sqlite(self.path, self.limit))
            for suffix in ("-wal", "-shm", "-journal"):
                if os.path.exists(self.path + suffix):
                    os.remove(self.path + suffix)
            return
        if not data.startswith(MAGIC):
            if data:
                log.warning("session ticket file %s unusable (not a ticket log): starting a "
                            "new one", self.path)
            self._rewrite([])
            return
        good = self._replay(data)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        os.fchmod(self._fd, 0o600)  # a file loosened by hand: tightened at the next start
        if good < len(data):
            log.warning("session ticket file %s: %d bytes after the last whole record cut off",
                        self.path, len(data) - good)
            os.ftruncate(self._fd, good)
        self._size = good
        self._prune(wall_ms() * 1000, len(self._index))

    def _replay(self, data: bytes) -> int:
        """The index from the log `data`; returns where its last whole record ends."""
        at, index, records = len(MAGIC), self._index, 0
        while at + _HEAD.size + _CRC.size <= len(data):
            kind, length = _HEAD.unpack_from(data, at)
            start, end = at + _HEAD.size, at + _HEAD.size + length
            if kind not in (_ADD, _USE) or end + _CRC.size > len(data):
                break
            (crc,) = _CRC.unpack_from(data, end)
            if crc != zlib.crc32(data[start:end], zlib.crc32(data[at:start])):
                break
            payload = data[start:end]
            records += 1
            if kind == _ADD:
                label = _label_of(payload)
                index.pop(label, None)
                index[label] = (start, length, _after_of(payload))
                if len(index) > self.limit:
                    del index[next(iter(index))]
            else:
                index.pop(payload, None)
            at = end + _CRC.size
        self._records = records
        return at

    def _rewrite(self, payloads: list[bytes]) -> None:
        """Replace the log by one holding the ADD records `payloads` (oldest first): written to
        a new file, fsynced, renamed over the log."""
        tmp = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        index: dict[bytes, tuple[int, int, int]] = {}
        try:
            chunks, size = [MAGIC], len(MAGIC)
            for payload in payloads:
                record = _record(_ADD, payload)
                index[_label_of(payload)] = (size + _HEAD.size, len(payload), _after_of(payload))
                chunks.append(record)
                size += len(record)
            _write_all(fd, b"".join(chunks))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        self._index, self._size, self._records = index, size, len(index)

    def _append(self, kind: int, payload: bytes) -> int:
        """Append one record; returns the offset of its payload."""
        record = _record(kind, payload)
        if self._fd is not None:
            _write_all(self._fd, record)
        at = self._size + _HEAD.size
        self._size += len(record)
        self._records += 1
        return at

    def _payload_at(self, label: bytes, entry: tuple[int, int, int]) -> bytes:
        if self._fd is None:
            return self._memory.pop(label)
        offset, length, _ = entry
        payload = os.pread(self._fd, length, offset)
        if len(payload) != length or _label_of(payload) != label:
            raise ValueError("ticket record does not read back")
        return payload

    # --- the QUIC library's callbacks -------------------------------------------------------

    def add(self, ticket) -> None:
        """the QUIC library's session_ticket_handler: keep a ticket the gateway is about to send
        (in the file when this returns: the flight that carries it leaves after)."""
        try:
            payload = _ticket_payload(ticket)
            if len(payload) >= _MAX_RECORD:
                raise ValueError("session ticket too large")
            label, index = ticket.ticket, self._index
            at = self._append(_ADD, payload)
            index.pop(label, None)
            index[label] = (at, len(payload), _us(ticket.not_valid_after))
            if self._fd is None:
                self._memory[label] = payload
            self._prune(wall_ms() * 1000, PRUNE_OLDEST)
            if self._fd is not None and self._records > 2 * len(index) + COMPACT_SLACK:
                self.compact()
        except (OSError, ValueError) as exc:
            log.warning("cannot store session ticket: %s", exc)

    def pop(self, label: bytes):
        """the QUIC library's session_ticket_fetcher: the ticket for `label`, its use recorded
        first, or None (unknown, used, expired or unreadable: a full handshake)."""
        entry = self._index.pop(label, None)
        if entry is None:
            return None
        try:
            payload = self._payload_at(label, entry)
            if entry[2] <= wall_ms() * 1000:
                return None
            self._append(_USE, label)
            return self._ticket(payload)
        except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
            log.warning("cannot use session ticket: %s", exc)
            return None

    def _prune(self, now_us: int, oldest: int) -> None:
        """Past the limit the oldest tickets go, and expired ones among the `oldest` oldest
        (no record: a replay of the log drops them the same way)."""
        index, memory = self._index, self._memory
        while len(index) > self.limit:
            memory.pop(label := next(iter(index)), None)
            del index[label]
        for label in [k for k, v in itertools.islice(index.items(), oldest) if v[2] <= now_us]:
            del index[label]
            memory.pop(label, None)

    def compact(self) -> None:
        """Rewrite the log with the live tickets only (oldest first)."""
        if self._fd is None:
            return
        payloads = [self._payload_at(label, entry) for label, entry in self._index.items()]
        self._rewrite(payloads)

    def _ticket(self, payload: bytes):
        """A `SessionTicket` of the store's QUIC library from an ADD payload."""
        lib = self._lib
        if lib is None:
            from geostream.quic import library

            lib = self._lib = self.lib or library()
        (label_len, after, before, age_add, suite, early, secret_len,
         name_len) = _FIELDS.unpack_from(payload)
        at = _FIELDS.size
        label = payload[at:at + label_len]
        at += label_len
        secret = payload[at:at + secret_len]
        at += secret_len
        name = None
        if name_len != _NO_NAME:
            name = payload[at:at + name_len].decode()
            at += name_len
        rest = payload[at:]
        return lib.SessionTicket(
            age_add=age_add, cipher_suite=lib.CipherSuite(suite),
            not_valid_after=lib.ticket_time(_EPOCH + after * _MICROSECOND),
            not_valid_before=lib.ticket_time(_EPOCH + before * _MICROSECOND),
            resumption_secret=secret, server_name=name, ticket=label,
            max_early_data_size=None if early < 0 else early,
            other_extensions=[(int(k), bytes.fromhex(v)) for k, v in json.loads(rest)]
            if rest else [])

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _private_dir(path: str) -> None:
    """Missing parent directories of `path`, 0700."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)


def _from_sqlite(path: str, limit: int) -> list[bytes]:
    """The live tickets of a file SQLite wrote (schema 1: a JSON ticket per row, before
    session 18) as ADD payloads, oldest first; none when it does not read."""
    payloads: list[bytes] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT ticket FROM session_tickets ORDER BY id").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        log.warning("session ticket file %s unusable (%s): starting a new one", path, exc)
        return payloads
    now_us = wall_ms() * 1000
    for (text,) in rows:
        try:
            d = json.loads(text)
            payload = _payload(
                bytes.fromhex(d["ticket"]),
                _us(utc(datetime.datetime.fromisoformat(d["not_valid_after"]))),
                _us(utc(datetime.datetime.fromisoformat(d["not_valid_before"]))),
                int(d["age_add"]), int(d["cipher_suite"]), d["max_early_data_size"],
                bytes.fromhex(d["resumption_secret"]), d["server_name"],
                [(int(k), bytes.fromhex(v)) for k, v in d["other_extensions"]])
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            log.warning("dropping an unreadable session ticket: %s", exc)
            continue
        if _after_of(payload) > now_us:
            payloads.append(payload)
    return payloads[-limit:]
