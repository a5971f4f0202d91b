"""The journal: a SQLite WAL store-and-forward queue (docs/journal.md has the contract).

A reading is *accepted* when `append()` returns: its transaction committed with
`synchronous=FULL` in WAL mode, so kill -9, reboot or power cut cannot lose it. It stays until
`acknowledge()` covers it. Synchronous and single-threaded by design: the daemon calls it from
one worker thread; tests call it directly.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cbor2

from .readings import Reading

log = logging.getLogger(__name__)

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


class JournalCorrupt(Exception):
    pass


@dataclass(frozen=True)
class JournalStats:
    epoch: int
    next_seq: int
    pending: int
    oldest_pending_ms: int | None
    file_bytes: int


def _new_epoch() -> int:
    # 62 random bits: a recreated journal never reuses (epoch, seq) pairs (protocol.md §5)
    return secrets.randbits(62) or 1


class Journal:
    def __init__(self, path: str):
        self.path = path
        self.moved_aside: str | None = None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self._db = self._open(path)
        except (sqlite3.DatabaseError, JournalCorrupt) as exc:
            self.moved_aside = self._move_aside(path, exc)
            self._db = self._open(path)
        self.epoch = self._meta("epoch")
        self.next_seq = self._meta("next_seq")

    # --- opening --------------------------------------------------------------------------

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            if _is_new(db):
                # must precede the first table; lets acked pages be returned in bounded steps
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise JournalCorrupt(result)
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (_new_epoch(),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', 1)")
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _move_aside(path: str, exc: Exception) -> str:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, aside + suffix)
        log.error("journal %s is corrupt (%s): kept as %s, starting a new epoch", path, exc, aside)
        return aside

    def _meta(self, key: str) -> int:
        return self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]

    # --- writing --------------------------------------------------------------------------

    def append(self, readings: Sequence[Reading]) -> list[int]:
        """Commit readings in one transaction; returns their sequence numbers once durable."""
        if not readings:
            return []
        first = self.next_seq
        rows = []
        for i, r in enumerate(readings):
            wire = r.to_wire()
            rows.append((first + i, wire["ts"], wire["k"], cbor2.dumps(wire)))
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO readings VALUES (?,?,?,?)", rows)
            db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (first + len(rows),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.next_seq = first + len(rows)
        return list(range(first, self.next_seq))

    def acknowledge(self, through: int, ranges: Iterable[tuple[int, int]] = ()) -> int:
        """Delete readings the backend committed; returns how many rows went."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            n = db.execute("DELETE FROM readings WHERE seq <= ?", (through,)).rowcount
            for first, last in ranges:
                n += db.execute(
                    "DELETE FROM readings WHERE seq BETWEEN ? AND ?", (first, last)
                ).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n

    # --- reading for the uplink -----------------------------------------------------------

    def batch_after(self, after_seq: int, max_readings: int, max_bytes: int) -> list[dict]:
        """Oldest-first pending readings with seq > after_seq, as wire maps with "q".

        Stops before the batch would exceed max_bytes of payload (always returns at least one
        reading when any is pending, so a large reading cannot wedge the queue).
        """
        out: list[dict] = []
        size = 0
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
        return out

    def acked_through(self) -> int:
        """Every seq ≤ this value is acknowledged (deleted)."""
        row = self._db.execute("SELECT min(seq) FROM readings").fetchone()
        return (row[0] - 1) if row[0] is not None else self.next_seq - 1

    def stats(self) -> JournalStats:
        pending, oldest = self._db.execute("SELECT count(*), min(ts_ms) FROM readings").fetchone()
        try:
            size = sum(
                os.path.getsize(self.path + s)
                for s in ("", "-wal")
                if os.path.exists(self.path + s)
            )
        except OSError:
            size = 0
        return JournalStats(self.epoch, self.next_seq, pending, oldest, size)

    def close(self) -> None:
        self._db.close()


def _is_new(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
