"""The embedded store's one SQLite connection: opening it with the store's pragmas, one
`BEGIN IMMEDIATE` transaction, splitting a migration file into statements, and `SqliteDb`,
the host every concern of the store runs on (the connection, its one worker thread, the
migrations)."""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from geostream.clock import wall_ms

from ..base import migration_renames, pending_migrations
from ..rows import signal_json
from ..store_thread import StoreThread

T = TypeVar("T")

# Page cache of the store's connection (KiB; SQLite's default is 2 MB): at 1 Hz each vehicle's
# newest leaf page of the readings is written again every second, so the pages the writer
# touches are ~4 KB per connected vehicle (40 MB at 10,000) plus last_position and last_signal;
# with less, every insert reads its page back from the file first.
CACHE_KIB = 65_536
# WAL frames (4 KB pages) between automatic checkpoints (SQLite's default: 1,000). A checkpoint
# copies the newest version of each page the WAL holds into the database file: at 10,000
# vehicles × 1 Hz the WAL grows ~2 pages per reading, so 1,000 frames was a checkpoint every
# ~2 commits copying nearly every page it had just written; 10,000 (a ~40 MB WAL) lets a page
# written several times between checkpoints be copied once.
WAL_AUTOCHECKPOINT_PAGES = 10_000

# Parts of `telemetry_arrivals` (sql/sqlite/0031); a vehicle's part is this SQL expression of its
# id (the view `vehicle_telemetry` holds the same text, which a test checks; `part_of` is the
# same in Python): the last two characters' code points, so every id maps without a function
# of our own that a plain `sqlite3` shell would lack.
PARTS = 16
PART = ("(coalesce(unicode(substr({v}, -1)), 0) * 7 "
        "+ coalesce(unicode(substr({v}, -2, 1)), 0) * 3) % 16")


@functools.lru_cache(maxsize=65_536)  # a fleet's ids; beyond, the oldest are computed again
def part_of(vehicle_id: str) -> int:
    """`PART` of a vehicle id, in Python (a test checks they agree)."""
    last = ord(vehicle_id[-1]) if vehicle_id else 0
    before = ord(vehicle_id[-2]) if len(vehicle_id) > 1 else 0
    return (last * 7 + before * 3) % PARTS


# Each vehicle's newest position and each (vehicle, signal)'s newest CAN value never move
# backwards in device time; of equal times the first stored stays.
LAST_POSITION_UPSERT = """INSERT INTO last_position VALUES (?,?,?,?,?,?,?,?)
    ON CONFLICT (vehicle_id) DO UPDATE SET time_ms=excluded.time_ms, lat=excluded.lat,
        lon=excluded.lon, speed_kmh=excluded.speed_kmh, course_deg=excluded.course_deg,
        epoch=excluded.epoch, seq=excluded.seq
    WHERE excluded.time_ms > last_position.time_ms"""
LAST_SIGNAL_UPSERT = """INSERT INTO last_signal VALUES (?,?,?,?)
    ON CONFLICT (vehicle_id, signal) DO UPDATE SET value=excluded.value, time_ms=excluded.time_ms
    WHERE excluded.time_ms > last_signal.time_ms"""
# Every signal of one CAN reading among the arrivals (found by its key: vehicle, time, epoch,
# seq), upserted by the same rule, its value the JSON text the reading's `data` holds (SQLite
# keeps a number's text as written: the text `signal_json` writes). Only for data our encoder
# wrote without `\"`, NaN or Infinity (`plain_can`): SQLite's JSON path cannot name a key
# holding a quote (its label ends at the first one), and SQLite 3.40 refuses NaN in JSON.
SNAPSHOT_SIGNALS_UPSERT = f"""INSERT INTO last_signal (vehicle_id, signal, value, time_ms)
    SELECT a.vehicle_id, j.key, a.data -> j.fullkey, a.time_ms
    FROM telemetry_arrivals a, json_each(a.data) j
    WHERE a.part = {PART.format(v="?1")} AND a.time_ms = ?2 AND a.vehicle_id = ?1
        AND a.epoch = ?3 AND a.seq = ?4 AND j.key <> 'bus'
    ON CONFLICT (vehicle_id, signal) DO UPDATE SET value=excluded.value, time_ms=excluded.time_ms
    WHERE excluded.time_ms > last_signal.time_ms"""


def _snapshot_order(kept: tuple) -> tuple:
    return kept[:3]  # (time, epoch, seq)


def plain_can(text: str) -> bool:
    """Whether SQLite reads every signal of a CAN reading's data JSON (`text`, our encoder's:
    a map's text starts with `{`) by `SNAPSHOT_SIGNALS_UPSERT`."""
    return (text[:1] == "{" and '\\"' not in text and "NaN" not in text
            and "Infinity" not in text)


class PendingLast:
    """The `last_position` and `last_signal` rows of committed readings not yet written to
    those tables: the newest per vehicle, and per vehicle the CAN readings whose signals are
    the newest per (vehicle, signal), by the tables' own rule (a later device time wins, the
    first of equal times stays), so writing them later gives the tables what writing each
    commit's would have. Kept by the vehicle's part of the arrivals (`part_of`), which a move
    writes alone. Pure; the store thread's alone.

    Why: at 10,000 vehicles a commit of 200 readings updated ~150 vehicles' rows spread over
    most of `last_position`'s ~170 pages and ~50 vehicles' `last_signal` pages (~0.8 WAL pages
    and ~6 µs of the store thread per reading); written with their part's move (readings.py),
    each vehicle's rows are written once per move instead of once per reading.

    A CAN reading's signals are not taken apart here: a vehicle's snapshot of the same signals
    as its newest kept one replaces it if newer (and is dropped if not), one of other signals
    is kept beside it; the move has SQLite read the kept snapshots' values from the arrivals
    (`SNAPSHOT_SIGNALS_UPSERT`, in device-time order). Why: the store thread holds the GIL for
    the Python, against the gateway's event loop, and a snapshot's 8 signals as rows (their
    values' text, a tuple each, a dict entry each) were ~40 % of its GIL-held time per
    reading (docs/benchmarks.md "The SQLite store thread's GIL, session 13"); SQLite's step
    runs without the GIL, and reads one snapshot per vehicle per move, not every one
    (deriving every reading's signals in SQL at the move instead cost 1.7× the store
    thread's CPU for the moves, session 14). Data SQLite cannot read that way (`plain_can`;
    none from a validated reading) is kept as signal rows, as before."""

    __slots__ = ("positions", "signals", "snapshots")

    def __init__(self) -> None:
        # [part] vehicle → LAST_POSITION_UPSERT's row
        self.positions: list[dict[str, tuple]] = [{} for _ in range(PARTS)]
        # [part] (vehicle, signal) → LAST_SIGNAL_UPSERT's row (data `plain_can` refuses)
        self.signals: list[dict[tuple[str, str], tuple]] = [{} for _ in range(PARTS)]
        # [part] vehicle → [(time, epoch, seq, data)] its CAN readings to read signals from
        # (empty: the vehicle's signals are in `signals`, a reading `plain_can` refused came)
        self.snapshots: list[dict[str, list[tuple]]] = [{} for _ in range(PARTS)]

    def add(self, positions: list[tuple], cans: list[tuple]) -> None:
        """One commit's rows: each vehicle's newest position (a batch's newest already) and
        every CAN reading with map data as (its `_INSERT` row, its data map)
        (readings.write_rows)."""
        position_parts = self.positions
        for row in positions:
            have = position_parts[part_of(row[0])]
            old = have.get(row[0])
            if old is None or row[1] > old[1]:
                have[row[0]] = row
        snapshot_parts = self.snapshots
        for row, data in cans:
            vehicle, t = row[0], row[3]
            part = snapshot_parts[part_of(vehicle)]
            kept = part.get(vehicle)
            if kept is None:
                if plain_can(row[13]):
                    part[vehicle] = [(t, row[1], row[2], data)]
                    continue
                part[vehicle] = kept = []
            if not kept:  # this vehicle's signals are rows here (until the move)
                self._add_signals(vehicle, t, data)
            elif not plain_can(row[13]):  # from now on: its kept snapshots as rows first
                for old in sorted(kept, key=_snapshot_order):
                    self._add_signals(vehicle, old[0], old[3])
                kept.clear()
                self._add_signals(vehicle, t, data)
            elif data.keys() != kept[-1][3].keys():
                kept.append((t, row[1], row[2], data))
            elif t > kept[-1][0]:  # the same signals, newer: theirs are newest
                kept[-1] = (t, row[1], row[2], data)

    def _add_signals(self, vehicle: str, t: int, data: dict) -> None:
        sigs = self.signals[part_of(vehicle)]
        for name, value in data.items():
            key = (vehicle, name)
            old = sigs.get(key)
            if name != "bus" and (old is None or t > old[3]):
                sigs[key] = (vehicle, name, signal_json(value), t)

    def __bool__(self) -> bool:
        return any(self.positions) or any(self.signals) or any(self.snapshots)

    def write(self, db: sqlite3.Connection, part: int | None = None) -> range | tuple[int]:
        """Upsert those of `part`'s vehicles (all without it) in the caller's transaction,
        while their readings are among the arrivals; `forget` the parts this returns once it
        commits."""
        parts = range(PARTS) if part is None else (part,)
        db.executemany(LAST_POSITION_UPSERT,
                       [r for p in parts for r in self.positions[p].values()])
        db.executemany(SNAPSHOT_SIGNALS_UPSERT, sorted(
            (vehicle, t, epoch, seq) for p in parts
            for vehicle, kept in self.snapshots[p].items() for t, epoch, seq, _ in kept))
        db.executemany(LAST_SIGNAL_UPSERT, [r for p in parts for r in self.signals[p].values()])
        return parts

    def forget(self, parts: range | tuple[int]) -> None:
        for p in parts:
            self.positions[p] = {}
            self.signals[p] = {}
            self.snapshots[p] = {}


def connect(path: str) -> sqlite3.Connection:
    """The store's connection: autocommit (transactions are explicit), WAL, durable commits."""
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: an ack promises the reading survives a backend power cut, not just a crash (in WAL
    # mode FULL syncs the WAL at every commit; NORMAL would sync only at checkpoints, and a
    # power cut could take the last acknowledged commits with it)
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA foreign_keys=ON")  # accounts: a deleted group takes its rows
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at its start (so it never fails to upgrade a read lock):
    committed when the block ends, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside our literals)."""
    out, buf = [], []
    for line in sql.splitlines():
        stripped = line.split("--", 1)[0]
        buf.append(stripped)
        if stripped.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    tail = "\n".join(buf).strip()
    if tail:
        out.append(tail)
    return out


class SqliteDb:
    """What every concern of the SQLite store needs from its host: the connection `_db`
    and `_run`, which runs a function on the store's one worker thread (SQLite calls block).
    Each concern's mixin derives from it; `SqliteStore` composes them."""

    def __init__(self, path: str):
        self.path = path
        self._executor = StoreThread("sqlite-store")
        self._conn: sqlite3.Connection | None = None
        # history questions read on a connection and thread of their own: under WAL they see
        # the last committed state while the writer goes on (a month-long route does not
        # hold up the acknowledgements of every vehicle)
        self._reader = StoreThread("sqlite-read")
        self._rconn: sqlite3.Connection | None = None
        # committed readings' newest positions and signals not in their tables yet: every
        # question of `last_position` or `last_signal` calls `_last_written()` first
        self._pending_last = PendingLast()

    @property
    def _db(self) -> sqlite3.Connection:
        """The open connection (use it on the worker thread only, through `_run`)."""
        if self._conn is None:
            raise RuntimeError("the store is not open")
        return self._conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._executor.run(fn, *args)

    @property
    def _rdb(self) -> sqlite3.Connection:
        """The read-only connection (on the reader thread only, through `_read`)."""
        if self._rconn is None:
            raise RuntimeError("the store is not open")
        return self._rconn

    def _last_written(self) -> None:
        """Write the pending `last_position` and `last_signal` rows (on the store's thread,
        before reading either table)."""
        pending = self._pending_last
        if pending:
            with transaction(self._db) as db:
                written = pending.write(db)
            pending.forget(written)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read-only `fn` (using `_rdb`) on the reader thread; an in-memory database
        has one connection, so there it runs on the writer's."""
        if self._rconn is self._conn:
            return await self._run(fn, *args)
        return await self._reader.run(fn, *args)

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self, migrate: bool = True) -> None:
        await self._run(self._open, migrate)

    def _open(self, migrate: bool) -> None:
        self._conn = connect(self.path)
        if migrate:
            self._migrate()
        if self.path == ":memory:":
            self._rconn = self._conn
        else:
            self._rconn = sqlite3.connect(self.path, isolation_level=None,
                                          check_same_thread=False)
            self._rconn.execute("PRAGMA query_only=ON")
            self._rconn.execute("PRAGMA busy_timeout=5000")

    async def close(self) -> None:
        if self._rconn is not None and self._rconn is not self._conn:
            await self._reader.run(self._rconn.close)
        self._rconn = None
        if self._conn is not None:
            await self._run(self._last_written)
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    async def migrate(self) -> list[str]:
        return await self._run(self._migrate)

    def _migrate(self) -> list[str]:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                   "(version TEXT PRIMARY KEY, applied_ms INTEGER NOT NULL)")
        done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
        renames = migration_renames("sqlite", done)
        if renames:
            with transaction(db):
                db.executemany("UPDATE schema_migrations SET version=? WHERE version=?",
                               [(new, old) for old, new in renames])
            done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
        applied = []
        for f in pending_migrations("sqlite", done):
            with transaction(db):
                for statement in statements(f.read_text()):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (f.stem, wall_ms()))
            applied.append(f.stem)
        return applied

    def is_transient(self, exc: BaseException) -> bool:
        """Locked/busy or I/O trouble is worth retrying; anything about the data is not."""
        return isinstance(exc, (sqlite3.OperationalError, OSError))
