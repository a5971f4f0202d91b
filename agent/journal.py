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
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from geostream.encoded import EncodedReadings

from .journal_drain import (
    NO_READINGS,
    DrainState,
    EpochChanged,
    delete_acked,
    next_rows,
    rows_after,
)
from .journal_file import (
    JournalCorrupt,
    counts,
    file_bytes,
    is_corrupt,
    is_disk_trouble,
    meta,
    move_aside,
    open_db,
    rollback,
)
from .journal_file import used_bytes as _used_bytes
from .journal_limits import Dropped, Limits, hold, record_drops
from .readings import Reading
from .stops import StopWatch
from .wire_encode import KIND, encode

log = logging.getLogger(__name__)
_TS_MS = attrgetter("ts_ms")

# limits, each with its reason (docs/journal.md; the size/age policy's are in journal_limits)
# 256 MiB: ~2.5 million readings, days of 10 Hz GPS + CAN offline, a small share of any SD card
DEFAULT_MAX_MB = 256.0
# a week: older readings are of little use to a dispatcher, and a week covers a long holiday
DEFAULT_MAX_AGE_H = 168.0
# readings held in RAM while the disk fails: ~30 min of 10 Hz GPS, ~5 MB of Python objects
DEFAULT_MEMORY_READINGS = 20_000
# while the disk fails, try it again this often (each try may cost a failed write)
RETRY_INTERVAL_S = 5.0

# DrainState, EpochChanged (journal_drain) and JournalCorrupt (journal_file) are part of the
# journal's interface and importable from here
__all__ = ["DrainState", "EpochChanged", "Journal", "JournalCorrupt", "JournalStats"]


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


class Journal:
    def __init__(self, path: str, *, max_mb: float = DEFAULT_MAX_MB,
                 max_age_h: float = DEFAULT_MAX_AGE_H,
                 memory_readings: int = DEFAULT_MEMORY_READINGS,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 stop_watch: StopWatch | None = None):
        self.path = path
        # arrivals detected on the vehicle, folded in each commit's transaction (agent/stops.py)
        self.stop_watch = stop_watch
        self._limits = Limits(int(max_mb * 1024 * 1024), int(max_age_h * 3600 * 1000))
        self.memory_readings = memory_readings
        self._clock = clock
        self._monotonic = monotonic
        self.moved_aside: str | None = None
        self.epoch = 0  # 0 only while the journal could not be opened at all
        self.next_seq = 0
        self._db: sqlite3.Connection | None = None
        self._page_size = 4096
        self._held: list[Reading] = []
        self._mem_dropped: Dropped | None = None
        self._degraded_reason: str | None = None
        self._retry_at = 0.0
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._connect(quick_check=True)
        except Exception as exc:
            if not is_disk_trouble(exc):
                raise
            self._enter_degraded(exc)

    # --- opening --------------------------------------------------------------------------

    @property
    def max_bytes(self) -> int:
        return self._limits.max_bytes

    @property
    def max_age_ms(self) -> int:
        return self._limits.max_age_ms

    def _connect(self, quick_check: bool) -> None:
        """Open (creating if needed); a corrupt file is moved aside and a new epoch begins."""
        try:
            db = open_db(self.path, quick_check)
        except (sqlite3.DatabaseError, JournalCorrupt) as exc:
            if not is_corrupt(exc):
                raise
            self.moved_aside = move_aside(self.path, exc)
            db = open_db(self.path, quick_check=False)
        if self.stop_watch is not None:
            self.stop_watch.prepare(db)
        self._db = db
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        old_epoch = self.epoch
        self.epoch = meta(db, "epoch")
        self.next_seq = meta(db, "next_seq")
        if old_epoch and old_epoch != self.epoch:
            log.error("journal %s came back with a new epoch %d (was %d)", self.path,
                      self.epoch, old_epoch)

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

    def _guard(self, default, fn, *args):
        """fn(*args), or `default` after entering degraded mode if the disk failed."""
        try:
            return fn(*args)
        except Exception as exc:
            if not is_disk_trouble(exc):
                raise
            self._enter_degraded(exc)
            return default

    # --- writing --------------------------------------------------------------------------

    def append(self, readings: Sequence[Reading]) -> list[int]:
        """Commit readings in one transaction; returns the seqs this call made durable.

        Normally those are the readings' own seqs, in order (plus any journal-dropped event
        the limits caused, appended after them). While the disk fails it returns [] and holds
        the readings in memory; the first successful call commits the held readings first.
        Never raises for disk trouble.
        """
        if readings:
            self._mem_dropped = hold(self._held, readings, self.memory_readings,
                                     self._mem_dropped)
        if not self._held and self._mem_dropped is None:
            return []
        if self._db is None:
            if self._monotonic() < self._retry_at:
                return []
            self._guard(None, self._connect, self._degraded_reason is not None
                        and "corrupt" in self._degraded_reason.lower())
            if self._db is None:
                return []
        seqs = self._guard(None, self._commit, self._held)
        if seqs is None:
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
        db.execute("BEGIN IMMEDIATE")
        try:
            if self.stop_watch is not None:  # its state and detections commit with these
                readings = [*readings, *self.stop_watch.fold(db, readings)]
            # the CBOR payload straight from the reading (agent/wire_encode.py, the same bytes
            # as cbor2.dumps(r.to_wire())); ts and kind are the wire map's "ts" and "k"
            rows = [(seq, r.ts_ms, KIND[type(r)], encode(r))
                    for seq, r in enumerate(readings, first)]
            newest_ts = max(0, max(map(_TS_MS, readings), default=0))
            n = first + len(rows)
            db.executemany("INSERT INTO readings VALUES (?,?,?,?)", rows)
            drops = [d for d in (self._mem_dropped, *self._limits.enforce(
                db, self._page_size, first, newest_ts, self._monotonic())) if d is not None]
            n = record_drops(db, drops, n, int(self._clock() * 1000))
            db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (n,))
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
        self.next_seq = n
        for d in drops:
            log.warning("journal %s: dropped %s readings (%s)", self.path,
                        dict(d.counts), d.reason)
        return list(range(first, n))

    # --- limits ---------------------------------------------------------------------------

    def used_bytes(self) -> int:
        assert self._db is not None
        return _used_bytes(self._db, self._page_size)

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
        return self._guard(0, delete_acked, db, through, ranges)

    # --- reading for the uplink -----------------------------------------------------------

    def batch_after(self, after_seq: int, max_readings: int, max_bytes: int) -> list[dict]:
        """Oldest-first pending readings with seq > after_seq, as wire maps with "q".

        Stops before the batch would exceed max_bytes of payload (always returns at least one
        reading when any is pending, so a large reading cannot wedge the queue).
        """
        if self._db is None:
            return []
        return self._guard([], rows_after, self._db, after_seq, max_readings, max_bytes)

    def next_batch(self, drain: DrainState, max_readings: int,
                   max_bytes: int) -> EncodedReadings:
        """Live-first: the newest pending position first (if the backlog batch would not
        reach it), then the backlog oldest-first, within max_readings and max_bytes, encoded
        for the wire (the session sends it as it would send the reading maps).

        Updates `drain` in place; start each connection with DrainState(acked_through()).
        Returns an empty batch when nothing is left to send on this connection.
        """
        if drain.epoch and drain.epoch != self.epoch:
            raise EpochChanged(f"journal epoch is now {self.epoch}, connection has {drain.epoch}")
        if self._db is None or max_readings <= 0:
            return NO_READINGS
        return self._guard(NO_READINGS, next_rows, self._db, drain, max_readings, max_bytes)

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
            pending, oldest, dropped = counts(self._db)
            used = self.used_bytes()
        except sqlite3.Error:
            return JournalStats(self.epoch, self.next_seq, 0, None, 0, state, held)
        return JournalStats(self.epoch, self.next_seq, pending, oldest, file_bytes(self.path),
                            state, held, dropped, used)

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

