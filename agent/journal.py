"""The journal: a SQLite WAL store-and-forward queue (docs/journal.md has the contract).

A reading is *accepted* when `append()` returns its sequence number: its transaction committed
with `synchronous=FULL` in WAL mode, so kill -9, reboot or power cut cannot lose it. It stays
until `acknowledge()` covers it, or until the size/age limits drop it under the documented
policy, which always leaves a `journal-dropped` event behind.

When the disk fails (ENOSPC, EIO, read-only remount) the journal does not raise: it holds the
newest readings in a bounded memory buffer, retries every RETRY_INTERVAL_S, and commits the
held readings first when the disk is back. Synchronous and single-threaded by design: the
daemon calls it from one worker thread; tests call it directly. Time is injectable (`clock`).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import cbor2

from .readings import Event, Reading
from .wire_encode import KIND, encode

log = logging.getLogger(__name__)
_TS_MS = attrgetter("ts_ms")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY,      -- per-vehicle sequence number within this epoch, from 1
    ts_ms INTEGER NOT NULL,       -- device time of the observation
    kind TEXT NOT NULL,           -- pos | can | evt
    payload BLOB NOT NULL         -- CBOR wire map without "q" (docs/protocol.md §4)
);
"""

# --- limits, each with its reason (docs/journal.md) -----------------------------------------
# 256 MiB: ~2.5 million readings, days of 10 Hz GPS + CAN offline, a small share of any SD card
DEFAULT_MAX_MB = 256.0
# a week: older readings are of little use to a dispatcher, and a week covers a long holiday
DEFAULT_MAX_AGE_H = 168.0
# readings held in RAM while the disk fails: ~30 min of 10 Hz GPS, ~5 MB of Python objects
DEFAULT_MEMORY_READINGS = 20_000
# when full, old positions are thinned to one per minute before anything is dropped outright
THIN_BUCKET_MS = 60_000
# rows one commit may thin or drop: a bounded step (tens of ms on a Pi), never a long stall
DROP_STEP_ROWS = 20_000
# once over the size limit, shed down to this share of it, so drops come in rare bursts
LOW_WATER = 0.9
# the age limit is checked at most this often (by the clock), so appends stay cheap
AGE_CHECK_INTERVAL_S = 60.0
# free pages kept for reuse after acks; beyond that, give pages back in bounded steps
VACUUM_KEEP_PAGES = 2048
VACUUM_STEP_PAGES = 512
# the WAL is truncated to this after a checkpoint, so it cannot stay large after a burst
WAL_SIZE_LIMIT = 4 * 1024 * 1024
# while the disk fails, try it again this often (each try may cost a failed write)
RETRY_INTERVAL_S = 5.0
# a journal-dropped event lists at most this many seq ranges (the last one widened to cover)
MAX_EVENT_RANGES = 32

# SQLite primary result codes (the low byte of the extended code)
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL = 8, 10, 11, 13
_SQLITE_CANTOPEN, _SQLITE_NOTADB = 14, 26
_CORRUPT = {_SQLITE_CORRUPT, _SQLITE_NOTADB}
_DISK = {_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN, 5, 6}  # + BUSY, LOCKED


class JournalCorrupt(Exception):
    pass


class EpochChanged(ConnectionError):
    """The journal was recreated under a connection: reconnect and announce the new epoch."""


@dataclass(frozen=True)
class JournalStats:
    epoch: int
    next_seq: int
    pending: int
    oldest_pending_ms: int | None
    file_bytes: int
    state: str = "ok"  # ok | degraded (disk trouble: readings held in memory)
    held: int = 0  # readings in the memory buffer, not yet accepted
    dropped: dict[str, int] = field(default_factory=dict)  # by kind, over the journal's life
    used_bytes: int = 0  # bytes of live pages: what the size limit counts


@dataclass
class DrainState:
    """Where the uplink is in the journal on one connection (see `next_batch`).

    `cursor`: every pending reading with seq ≤ cursor has been sent; `live`: seqs above the
    cursor already sent ahead of the backlog (live-first), so the backlog skips them; `epoch`:
    the connection's epoch — `next_batch` raises EpochChanged if the journal's differs;
    `more`: set by `next_batch` when it stopped at a budget rather than at the last reading.
    """

    cursor: int
    live: set[int] = field(default_factory=set)
    epoch: int = 0  # the epoch the connection announced; 0 = do not check
    more: bool = False  # the last batch stopped at its budget: readings are left to send


def _new_epoch() -> int:
    # 62 random bits: a recreated journal never reuses (epoch, seq) pairs (protocol.md §5)
    return secrets.randbits(62) or 1


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_corrupt(exc: BaseException) -> bool:
    return isinstance(exc, JournalCorrupt) or _code(exc) in _CORRUPT or (
        isinstance(exc, sqlite3.DatabaseError) and _code(exc) is None
        and ("malformed" in str(exc) or "not a database" in str(exc))
    )


def is_disk_trouble(exc: BaseException) -> bool:
    """ENOSPC, EIO, read-only, vanished storage — and corruption found while running."""
    if isinstance(exc, OSError):
        return True
    if not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return False
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return False
    return _code(exc) in _DISK or is_corrupt(exc)


@dataclass
class _Dropped:
    reason: str
    counts: Counter = field(default_factory=Counter)
    seqs: list[int] = field(default_factory=list)
    ts_min: int | None = None
    ts_max: int | None = None

    def add(self, seq: int | None, kind: str, ts: int) -> None:
        self.counts[kind] += 1
        if seq is not None:
            self.seqs.append(seq)
        self.ts_min = ts if self.ts_min is None else min(self.ts_min, ts)
        self.ts_max = ts if self.ts_max is None else max(self.ts_max, ts)

    def event(self, now_ms: int) -> Event:
        data: dict = {"reason": self.reason, "counts": dict(self.counts),
                      "ts": [self.ts_min, self.ts_max]}
        if self.seqs:
            data["ranges"] = _ranges(sorted(self.seqs))
        return Event(now_ms, "journal-dropped", data)


def _ranges(seqs: list[int]) -> list[list[int]]:
    """Sorted seqs → inclusive [first, last] runs; at most MAX_EVENT_RANGES, the last widened."""
    out: list[list[int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    if len(out) > MAX_EVENT_RANGES:
        out = out[: MAX_EVENT_RANGES - 1] + [[out[MAX_EVENT_RANGES - 1][0], out[-1][1]]]
    return out


class Journal:
    def __init__(self, path: str, *, max_mb: float = DEFAULT_MAX_MB,
                 max_age_h: float = DEFAULT_MAX_AGE_H,
                 memory_readings: int = DEFAULT_MEMORY_READINGS,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.path = path
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.max_age_ms = int(max_age_h * 3600 * 1000)
        self.memory_readings = memory_readings
        self._clock = clock
        self._monotonic = monotonic
        self.moved_aside: str | None = None
        self.epoch = 0  # 0 only while the journal could not be opened at all
        self.next_seq = 0
        self._db: sqlite3.Connection | None = None
        self._page_size = 4096
        self._held: list[Reading] = []
        self._mem_dropped: _Dropped | None = None
        self._degraded_reason: str | None = None
        self._retry_at = 0.0
        self._next_age_check = 0.0
        self._shedding = False
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._connect(quick_check=True)
        except Exception as exc:
            if not is_disk_trouble(exc):
                raise
            self._enter_degraded(exc)

    # --- opening --------------------------------------------------------------------------

    def _connect(self, quick_check: bool) -> None:
        """Open (creating if needed); a corrupt file is moved aside and a new epoch begins."""
        try:
            db = self._open(self.path, quick_check)
        except (sqlite3.DatabaseError, JournalCorrupt) as exc:
            if not is_corrupt(exc):
                raise
            self.moved_aside = self._move_aside(self.path, exc)
            db = self._open(self.path, quick_check=False)
        self._db = db
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        old_epoch = self.epoch
        self.epoch = self._meta("epoch")
        self.next_seq = self._meta("next_seq")
        if old_epoch and old_epoch != self.epoch:
            log.error("journal %s came back with a new epoch %d (was %d)", self.path,
                      self.epoch, old_epoch)

    @staticmethod
    def _open(path: str, quick_check: bool = True) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            if _is_new(db):
                # must precede the first table; lets acked pages be returned in bounded steps
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise sqlite3.OperationalError("cannot enter WAL mode (read-only storage?)")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            if quick_check:
                result = db.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise JournalCorrupt(result)
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (_new_epoch(),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', 1)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('thinned_through', 0)")
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _move_aside(path: str, exc: Exception) -> str:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        n = 1
        while os.path.exists(aside):
            n += 1
            aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{n}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, aside + suffix)
        log.error("journal %s is corrupt (%s): kept as %s, starting a new epoch", path, exc, aside)
        return aside

    def _meta(self, key: str) -> int:
        assert self._db is not None
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else 0

    # --- disk trouble ---------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self._degraded_reason is not None

    def _enter_degraded(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self._degraded_reason is None:
            log.error("journal %s: disk trouble (%s); holding up to %d newest readings in "
                      "memory, retrying every %.0f s", self.path, reason, self.memory_readings,
                      RETRY_INTERVAL_S)
        self._degraded_reason = reason
        self._retry_at = self._monotonic() + RETRY_INTERVAL_S
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def _hold(self, readings: Sequence[Reading]) -> None:
        self._held.extend(readings)
        excess = len(self._held) - self.memory_readings
        if excess > 0:
            if self._mem_dropped is None:
                self._mem_dropped = _Dropped("memory")
            for r in self._held[:excess]:
                wire = r.to_wire()
                self._mem_dropped.add(None, wire["k"], wire["ts"])
            del self._held[:excess]

    # --- writing --------------------------------------------------------------------------

    def append(self, readings: Sequence[Reading]) -> list[int]:
        """Commit readings in one transaction; returns the seqs this call made durable.

        Normally those are the readings' own seqs, in order (plus any journal-dropped event
        the limits caused, appended after them). While the disk fails it returns [] and holds
        the readings in memory; the first successful call commits the held readings first.
        Never raises for disk trouble.
        """
        if readings:
            self._hold(readings)
        if not self._held and self._mem_dropped is None:
            return []
        if self._db is None:
            if self._monotonic() < self._retry_at:
                return []
            try:
                self._connect(quick_check=self._degraded_reason is not None
                              and "corrupt" in self._degraded_reason.lower())
            except Exception as exc:
                if not is_disk_trouble(exc):
                    raise
                self._enter_degraded(exc)
                return []
        try:
            seqs = self._commit(self._held)
        except Exception as exc:
            if not is_disk_trouble(exc):
                raise
            self._enter_degraded(exc)
            return []
        if self._degraded_reason is not None:
            log.warning("journal %s: disk is back; %d held readings committed", self.path,
                        len(self._held))
            self._degraded_reason = None
        self._held = []
        self._mem_dropped = None
        return seqs

    def _commit(self, readings: Sequence[Reading]) -> list[int]:
        db = self._db
        assert db is not None
        first = self.next_seq
        # the CBOR payload straight from the reading (agent/wire_encode.py, the same bytes as
        # cbor2.dumps(r.to_wire())); ts and kind are the wire map's "ts" and "k"
        rows = [(seq, r.ts_ms, KIND[type(r)], encode(r))
                for seq, r in enumerate(readings, first)]
        newest_ts = max(0, max(map(_TS_MS, readings), default=0))
        n = first + len(rows)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO readings VALUES (?,?,?,?)", rows)
            drops = [d for d in (self._mem_dropped, *self._enforce_limits(db, first, newest_ts))
                     if d is not None]
            now_ms = int(self._clock() * 1000)
            for d in drops:
                wire = d.event(now_ms).to_wire()
                db.execute("INSERT INTO readings VALUES (?,?,?,?)",
                           (n, wire["ts"], "evt", cbor2.dumps(wire)))
                n += 1
                for kind, count in d.counts.items():
                    db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                               "SET value = value + excluded.value", (f"dropped_{kind}", count))
            db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (n,))
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        self.next_seq = n
        for d in drops:
            log.warning("journal %s: dropped %s readings (%s)", self.path,
                        dict(d.counts), d.reason)
        return list(range(first, n))

    # --- limits ---------------------------------------------------------------------------

    def used_bytes(self) -> int:
        assert self._db is not None
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size

    def _enforce_limits(self, db: sqlite3.Connection, before_seq: int,
                        newest_ts: int) -> list[_Dropped | None]:
        """Inside the append transaction: one bounded age step and one bounded size step.

        Only readings older than this append (seq < before_seq) are candidates, so a live
        reading is never dropped by its own append.
        """
        out: list[_Dropped | None] = []
        now = self._monotonic()
        if self.max_age_ms > 0 and now >= self._next_age_check and newest_ts:
            self._next_age_check = now + AGE_CHECK_INTERVAL_S
            out.append(self._drop_older_than(db, newest_ts - self.max_age_ms, before_seq))
        if self.max_bytes > 0:
            used = self.used_bytes()
            if used > self.max_bytes:
                self._shedding = True
            if self._shedding:
                if used <= self.max_bytes * LOW_WATER:
                    self._shedding = False
                else:
                    out.extend(self._shed_step(db, before_seq))
        return out

    def _drop_older_than(self, db: sqlite3.Connection, cutoff_ts: int,
                         before_seq: int) -> _Dropped | None:
        # device time of the newest reading is "now": a Pi without RTC may boot with a wrong
        # clock, but GNSS time in the readings is right
        rows = db.execute(
            "SELECT seq, kind, ts_ms FROM readings WHERE seq < ? AND kind != 'evt' "
            "ORDER BY seq LIMIT ?", (before_seq, DROP_STEP_ROWS)).fetchall()
        dropped = _Dropped("age")
        for seq, kind, ts in rows:
            if ts < cutoff_ts:  # not a break: device time is not strictly ordered by seq
                dropped.add(seq, kind, ts)
        if not dropped.seqs:
            return None
        _delete_seqs(db, dropped.seqs)
        return dropped

    def _shed_step(self, db: sqlite3.Connection, before_seq: int) -> list[_Dropped | None]:
        """One bounded step of the size policy (docs/journal.md):

        1. thin positions in the older half of the journal to one per THIN_BUCKET_MS, oldest
           first (the newer half, where the dispatcher looks, is never thinned);
        2. if the journal is still over its limit, drop the oldest non-event readings, about
           as many as bring it to LOW_WATER, at most DROP_STEP_ROWS.
        """
        lowest = db.execute("SELECT min(seq) FROM readings").fetchone()[0] or before_seq
        horizon = lowest + (before_seq - lowest) // 2
        thinned = max(self._meta("thinned_through"), lowest - 1)
        rows = db.execute(
            "SELECT seq, kind, ts_ms FROM readings WHERE seq > ? AND seq <= ? "
            "ORDER BY seq LIMIT ?", (thinned, horizon, DROP_STEP_ROWS)).fetchall()
        thin = None
        if rows:
            thin = _Dropped("size-thinned")
            last_bucket = self._meta("thinned_bucket")
            for seq, kind, ts in rows:
                if kind != "pos":
                    continue
                bucket = ts // THIN_BUCKET_MS
                if bucket == last_bucket:
                    thin.add(seq, kind, ts)
                else:
                    last_bucket = bucket
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (("thinned_through", rows[-1][0]), ("thinned_bucket", last_bucket)))
            if thin.seqs:
                _delete_seqs(db, thin.seqs)
            else:
                thin = None
        used = self.used_bytes()
        if used <= self.max_bytes or before_seq <= lowest:
            return [thin]
        # rows ≈ seq span (holes make this high, so the per-row size low: we drop too few,
        # never too many, and the next append drops again)
        per_row = used / max(before_seq - lowest, 1)
        want = int((used - self.max_bytes * LOW_WATER) / per_row) + 1
        rows = db.execute(
            "SELECT seq, kind, ts_ms FROM readings WHERE seq < ? AND kind != 'evt' "
            "ORDER BY seq LIMIT ?", (before_seq, min(want, DROP_STEP_ROWS))).fetchall()
        if not rows:
            return [thin]
        dropped = _Dropped("size")
        for seq, kind, ts in rows:
            dropped.add(seq, kind, ts)
        _delete_seqs(db, dropped.seqs)
        return [thin, dropped]

    # --- acknowledging --------------------------------------------------------------------

    def acknowledge(self, through: int, ranges: Iterable[tuple[int, int]] = (),
                    epoch: int | None = None) -> int:
        """Delete readings the backend committed; returns how many rows went.

        With `epoch`, an ack for another epoch (the journal was recreated meanwhile) is
        ignored: it must never delete the new journal's rows.

        Freed pages are reused by later appends; beyond VACUUM_KEEP_PAGES free pages, at most
        VACUUM_STEP_PAGES go back to the file system per call (bounded, no long stall).
        """
        db = self._db
        if db is None:
            return 0  # degraded: the rows are sent (and acknowledged) again later
        if epoch is not None and epoch != self.epoch:
            log.warning("journal %s: ignoring an ack for epoch %d (journal epoch is %d)",
                        self.path, epoch, self.epoch)
            return 0
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                n = db.execute("DELETE FROM readings WHERE seq <= ?", (through,)).rowcount
                for first, last in ranges:
                    n += db.execute(
                        "DELETE FROM readings WHERE seq BETWEEN ? AND ?", (first, last)
                    ).rowcount
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            if free > VACUUM_KEEP_PAGES:
                # its own short transaction; executescript steps it to completion (a plain
                # execute() frees only one page)
                step = min(VACUUM_STEP_PAGES, free - VACUUM_KEEP_PAGES)
                db.executescript(f"PRAGMA incremental_vacuum({step})")
        except Exception as exc:
            if not is_disk_trouble(exc):
                raise
            self._enter_degraded(exc)
            return 0
        return n

    # --- reading for the uplink -----------------------------------------------------------

    def batch_after(self, after_seq: int, max_readings: int, max_bytes: int) -> list[dict]:
        """Oldest-first pending readings with seq > after_seq, as wire maps with "q".

        Stops before the batch would exceed max_bytes of payload (always returns at least one
        reading when any is pending, so a large reading cannot wedge the queue).
        """
        if self._db is None:
            return []
        out: list[dict] = []
        size = 0
        try:
            cur = self._db.execute(
                "SELECT seq, payload FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, max_readings),
            )
            for seq, payload in cur:
                size += len(payload) + 3  # + the "q" key and a small uint
                if out and size > max_bytes:
                    break
                wire = cbor2.loads(payload)
                wire["q"] = seq
                out.append(wire)
        except Exception as exc:
            if not is_disk_trouble(exc):
                raise
            self._enter_degraded(exc)
            return []
        return out

    def next_batch(self, drain: DrainState, max_readings: int, max_bytes: int) -> list[dict]:
        """Live-first: the newest pending position first (if the backlog batch would not
        reach it), then the backlog oldest-first, within max_readings and max_bytes.

        Updates `drain` in place; start each connection with DrainState(acked_through()).
        Returns [] when nothing is left to send on this connection.
        """
        if drain.epoch and drain.epoch != self.epoch:
            raise EpochChanged(f"journal epoch is now {self.epoch}, connection has {drain.epoch}")
        if self._db is None or max_readings <= 0:
            return []
        try:
            return self._next_batch(drain, max_readings, max_bytes)
        except Exception as exc:
            if not is_disk_trouble(exc):
                raise
            self._enter_degraded(exc)
            return []

    def _next_batch(self, drain: DrainState, max_readings: int, max_bytes: int) -> list[dict]:
        db = self._db
        assert db is not None
        live = db.execute(
            "SELECT seq, payload FROM readings WHERE kind='pos' AND seq > ? "
            "ORDER BY seq DESC LIMIT 1", (drain.cursor,)).fetchone()
        if live is not None and live[0] in drain.live:
            live = None
        budget_n, budget_b = max_readings, max_bytes
        if live is not None and max_readings > 1:
            budget_n -= 1
            budget_b -= len(live[1]) + 3
        backlog: list[tuple[int, bytes]] = []
        size = 0
        # rows beyond the budget tell whether readings are left (`more`); the live row can be
        # one of them, and goes anyway
        cur = db.execute("SELECT seq, payload FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
                         (drain.cursor, budget_n + len(drain.live) + 2))
        drain.more = False
        for seq, payload in cur:
            if seq in drain.live:
                continue
            if live is not None and seq == live[0] and (
                    len(backlog) >= budget_n or size + len(payload) + 3 > budget_b):
                continue
            if len(backlog) >= budget_n:
                drain.more = True
                break
            size += len(payload) + 3
            if (backlog or live is not None) and size > budget_b:
                drain.more = True
                break
            backlog.append((seq, payload))
        rows = backlog
        if live is not None and not any(seq == live[0] for seq, _ in backlog):
            rows = [live, *backlog]
            drain.live.add(live[0])
        if backlog:
            drain.cursor = backlog[-1][0]
            drain.live = {s for s in drain.live if s > drain.cursor}
        out = []
        for seq, payload in rows:
            wire = cbor2.loads(payload)
            wire["q"] = seq
            out.append(wire)
        return out

    def acked_through(self) -> int:
        """Every seq ≤ this value is acknowledged (deleted) or dropped."""
        if self._db is None:
            return max(self.next_seq - 1, 0)
        row = self._db.execute("SELECT min(seq) FROM readings").fetchone()
        return (row[0] - 1) if row[0] is not None else self.next_seq - 1

    def stats(self) -> JournalStats:
        held = len(self._held)
        state = "degraded" if self.degraded else "ok"
        if self._db is None:
            return JournalStats(self.epoch, self.next_seq, 0, None, 0, state, held)
        try:
            pending, oldest = self._db.execute(
                "SELECT count(*), min(ts_ms) FROM readings").fetchone()
            dropped = {k.removeprefix("dropped_"): v for k, v in self._db.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'dropped_%'")}
            used = self.used_bytes()
        except sqlite3.Error:
            return JournalStats(self.epoch, self.next_seq, 0, None, 0, state, held)
        try:
            size = sum(
                os.path.getsize(self.path + s)
                for s in ("", "-wal")
                if os.path.exists(self.path + s)
            )
        except OSError:
            size = 0
        return JournalStats(self.epoch, self.next_seq, pending, oldest, size, state, held,
                            dropped, used)

    def close(self) -> None:
        if self._held:
            self._retry_at = 0.0
            self.append([])  # a last try for readings held during disk trouble
        if self._held:
            log.error("journal %s: %d held readings lost at close (disk still failing)",
                      self.path, len(self._held))
        if self._db is not None:
            self._db.close()
            self._db = None


def _rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the failed statement may have rolled back already


def _delete_seqs(db: sqlite3.Connection, seqs: list[int]) -> None:
    db.executemany("DELETE FROM readings WHERE seq = ?", ((s,) for s in seqs))


def _is_new(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
