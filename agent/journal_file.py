"""The journal's SQLite file: its schema, opening it in WAL mode with `synchronous=FULL`,
telling corruption from disk trouble, and moving a corrupt file aside (docs/journal.md §5–6).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time

log = logging.getLogger("agent.journal")

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

# the WAL is truncated to this after a checkpoint, so it cannot stay large after a burst
WAL_SIZE_LIMIT = 4 * 1024 * 1024

# SQLite primary result codes (the low byte of the extended code)
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL = 8, 10, 11, 13
_SQLITE_CANTOPEN, _SQLITE_NOTADB = 14, 26
_CORRUPT = {_SQLITE_CORRUPT, _SQLITE_NOTADB}
_DISK = {_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN, 5, 6}  # + BUSY, LOCKED


class JournalCorrupt(Exception):
    pass


def new_epoch() -> int:
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


def open_db(path: str, quick_check: bool = True) -> sqlite3.Connection:
    """Open (creating schema and meta rows if needed); raises JournalCorrupt on a bad check."""
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
        db.execute("BEGIN IMMEDIATE")  # tables and meta rows appear together or not at all
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (new_epoch(),))
        db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', 1)")
        db.execute("INSERT OR IGNORE INTO meta VALUES ('thinned_through', 0)")
        db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    return db


def move_aside(path: str, exc: Exception) -> str:
    """Rename a corrupt journal (and its -wal, -shm) to `path.corrupt-<time>`; returns that."""
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


def meta(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return row[0] if row else 0


def used_bytes(db: sqlite3.Connection, page_size: int) -> int:
    """Bytes of live pages: what the size limit counts."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size


def counts(db: sqlite3.Connection) -> tuple[int, int | None, dict[str, int]]:
    """(pending readings, the oldest one's device time, {kind: dropped over the file's life})."""
    pending, oldest = db.execute("SELECT count(*), min(ts_ms) FROM readings").fetchone()
    dropped = {k.removeprefix("dropped_"): v for k, v in db.execute(
        "SELECT key, value FROM meta WHERE key LIKE 'dropped_%'")}
    return pending, oldest, dropped


def file_bytes(path: str) -> int:
    """The journal's size on disk with its WAL (0 if it cannot be read)."""
    try:
        return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    except OSError:
        return 0


def rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the failed statement may have rolled back already


def delete_seqs(db: sqlite3.Connection, seqs: list[int]) -> None:
    db.executemany("DELETE FROM readings WHERE seq = ?", ((s,) for s in seqs))


def _is_new(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
