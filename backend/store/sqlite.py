"""Embedded SQLite store: the zero-setup default. All calls run on one worker thread."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import shapely
import shapely.geometry

from .base import (
    AuthResult,
    DeadLetter,
    StoredReading,
    hash_token,
    new_token,
    newest_positions,
    newest_signals,
    pending_migrations,
    token_matches,
)
from .base import now_ms as clock_ms
from .sqlite_accounts import SqliteAccounts
from .sqlite_alerts import SqliteAlerts
from .sqlite_api import SqliteApiQueries
from .sqlite_commands import SqliteCommands
from .sqlite_db import connect, statements, transaction
from .sqlite_dispatch import SqliteDispatch
from .sqlite_maintenance import SqliteMaintenance

_INSERT = """INSERT INTO vehicle_telemetry
    (vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh, course_deg, fix, sats, hdop,
     data, received_ms)
    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT (vehicle_id, epoch, seq) DO NOTHING"""
_LAST = """INSERT INTO last_position VALUES (?,?,?,?,?,?,?,?)
    ON CONFLICT (vehicle_id) DO UPDATE SET time_ms=excluded.time_ms, lat=excluded.lat,
        lon=excluded.lon, speed_kmh=excluded.speed_kmh, course_deg=excluded.course_deg,
        epoch=excluded.epoch, seq=excluded.seq
    WHERE excluded.time_ms > last_position.time_ms"""
_SIGNAL = """INSERT INTO last_signal VALUES (?,?,?,?)
    ON CONFLICT (vehicle_id, signal) DO UPDATE SET value=excluded.value, time_ms=excluded.time_ms
    WHERE excluded.time_ms > last_signal.time_ms"""
# a position's columns as the queries return them
_POINT = "time_ms, lat, lon, speed_kmh, course_deg, epoch, seq"
_DEAD = """INSERT INTO dead_letter (vehicle_id, epoch, seq, reading, error, received_ms)
    VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING"""


class SqliteStore(SqliteAccounts, SqliteApiQueries, SqliteAlerts, SqliteMaintenance,
                  SqliteCommands, SqliteDispatch):
    def __init__(self, path: str):
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self, migrate: bool = True) -> None:
        await self._run(self._open, migrate)

    def _open(self, migrate: bool) -> None:
        self._db = connect(self.path)
        if migrate:
            self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def migrate(self) -> list[str]:
        return await self._run(self._migrate)

    def _migrate(self) -> list[str]:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                   "(version TEXT PRIMARY KEY, applied_ms INTEGER NOT NULL)")
        done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
        applied = []
        for f in pending_migrations("sqlite", done):
            with transaction(db):
                for statement in statements(f.read_text()):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (f.stem, clock_ms()))
            applied.append(f.stem)
        return applied

    # --- writing --------------------------------------------------------------------------

    async def write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        await self._run(self._write, readings, dead)

    def _write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        db = self._db
        with transaction(db):
            db.executemany(_INSERT, [
                (r.vehicle_id, r.epoch, r.seq, r.time_ms, r.kind, r.lat, r.lon, r.alt_m,
                 r.speed_kmh, r.course_deg, r.fix, r.sats, r.hdop, r.data_json(), r.received_ms)
                for r in readings
            ])
            db.executemany(_LAST, [
                (r.vehicle_id, r.time_ms, r.lat, r.lon, r.speed_kmh, r.course_deg, r.epoch, r.seq)
                for r in newest_positions(readings).values()
            ])
            db.executemany(_SIGNAL, [
                (v, name, json.dumps(value, default=str), t)
                for (v, name), (value, t) in newest_signals(readings).items()])
            db.executemany(_DEAD, [
                (d.vehicle_id, d.epoch, d.seq, json.dumps(d.reading, default=str), d.error,
                 d.received_ms) for d in dead
            ])

    # --- vehicles -------------------------------------------------------------------------

    async def add_vehicle(self, vehicle_id: str) -> str:
        token = new_token()

        def add() -> None:
            self._db.execute(
                "INSERT INTO vehicles VALUES (?,?,?,NULL) ON CONFLICT (vehicle_id) DO UPDATE "
                "SET token_hash=excluded.token_hash, revoked_ms=NULL",
                (vehicle_id, hash_token(token), clock_ms()),
            )

        await self._run(add)
        return token

    async def revoke_vehicle(self, vehicle_id: str) -> bool:
        def revoke() -> bool:
            cur = self._db.execute(
                "UPDATE vehicles SET revoked_ms=? WHERE vehicle_id=? AND revoked_ms IS NULL",
                (clock_ms(), vehicle_id),
            )
            return cur.rowcount > 0

        return await self._run(revoke)

    async def list_vehicles(self) -> list[dict]:
        def rows():
            cur = self._db.execute(
                "SELECT v.vehicle_id, v.created_ms, v.revoked_ms, p.time_ms FROM vehicles v "
                "LEFT JOIN last_position p USING (vehicle_id) ORDER BY v.vehicle_id")
            return [dict(vehicle_id=a, created_ms=b, revoked_ms=c, last_seen_ms=d)
                    for a, b, c, d in cur]

        return await self._run(rows)

    async def authenticate(self, vehicle_id: str, token: str) -> AuthResult:
        def check() -> AuthResult:
            row = self._db.execute(
                "SELECT token_hash, revoked_ms FROM vehicles WHERE vehicle_id=?", (vehicle_id,)
            ).fetchone()
            if row is None or not token_matches(token, row[0]):
                return AuthResult.UNKNOWN
            return AuthResult.REVOKED if row[1] is not None else AuthResult.OK

        return await self._run(check)

    async def revoked_vehicles(self) -> set[str]:
        def rows():
            cur = self._db.execute("SELECT vehicle_id FROM vehicles WHERE revoked_ms IS NOT NULL")
            return {r[0] for r in cur}

        return await self._run(rows)

    # --- queries --------------------------------------------------------------------------

    async def last_positions(self) -> list[dict]:
        def rows():
            cur = self._db.execute(
                f"SELECT vehicle_id, {_POINT} FROM last_position ORDER BY vehicle_id")
            keys = ("vehicle_id", *_POINT.split(", "))
            return [dict(zip(keys, r, strict=True)) for r in cur]

        return await self._run(rows)

    async def route(self, vehicle_id: str, start_ms: int, end_ms: int,
                    step_ms: int | None = None) -> list[dict]:
        """Positions in [start, end) by device time; with `step_ms`, the first of each bucket."""
        def rows():
            cur = self._db.execute(
                f"SELECT {_POINT} FROM vehicle_telemetry "
                "WHERE vehicle_id=? AND kind='pos' AND lat IS NOT NULL AND lon IS NOT NULL "
                "AND time_ms >= ? AND time_ms < ? "
                "ORDER BY time_ms, epoch, seq", (vehicle_id, start_ms, end_ms))
            points = [dict(zip(_POINT.split(", "), r, strict=True)) for r in cur]
            return _first_per_bucket(points, step_ms) if step_ms else points

        return await self._run(rows)

    async def geofence_entries(self, geofence_id: str, start_ms: int,
                               end_ms: int) -> list[dict]:
        """Outside→inside transitions in [start, end), on each vehicle's points ordered by
        device time. The point before the window counts as the predecessor of the first."""
        def entries():
            row = self._db.execute("SELECT area FROM geofences WHERE geofence_id=?",
                                   (geofence_id,)).fetchone()
            if row is None:
                return []
            area = shapely.geometry.shape(json.loads(row[0]))
            shapely.prepare(area)
            out = []
            vehicles = [r[0] for r in self._db.execute(
                "SELECT DISTINCT vehicle_id FROM vehicle_telemetry WHERE kind='pos' "
                "AND time_ms >= ? AND time_ms < ? ORDER BY 1", (start_ms, end_ms))]
            for vehicle in vehicles:
                before = self._db.execute(
                    "SELECT time_ms, lat, lon, epoch, seq FROM vehicle_telemetry "
                    "WHERE vehicle_id=? AND kind='pos' AND lat IS NOT NULL AND time_ms < ? "
                    "ORDER BY time_ms DESC, epoch DESC, seq DESC LIMIT 1",
                    (vehicle, start_ms)).fetchall()
                window = self._db.execute(
                    "SELECT time_ms, lat, lon, epoch, seq FROM vehicle_telemetry "
                    "WHERE vehicle_id=? AND kind='pos' AND lat IS NOT NULL "
                    "AND time_ms >= ? AND time_ms < ? ORDER BY time_ms, epoch, seq",
                    (vehicle, start_ms, end_ms)).fetchall()
                pts = before + window
                inside = shapely.intersects_xy(area, [p[2] for p in pts], [p[1] for p in pts])
                for i in range(len(before), len(pts)):
                    if inside[i] and i > 0 and not inside[i - 1]:
                        t, lat, lon, epoch, seq = pts[i]
                        out.append(dict(vehicle_id=vehicle, time_ms=t, lat=lat, lon=lon,
                                        epoch=epoch, seq=seq))
            return out

        return await self._run(entries)

    async def dead_letters(self) -> list[dict]:
        def rows():
            cur = self._db.execute(
                "SELECT vehicle_id, epoch, seq, reading, error FROM dead_letter ORDER BY id")
            return [dict(vehicle_id=a, epoch=b, seq=c, reading=json.loads(d), error=e)
                    for a, b, c, d, e in cur]

        return await self._run(rows)

    async def maintain(self, now_ms: int | None = None) -> dict:
        return {"created": 0, "dropped": []}  # one table, no partitions

    def is_transient(self, exc: BaseException) -> bool:
        """Locked/busy or I/O trouble is worth retrying; anything about the data is not."""
        return isinstance(exc, (sqlite3.OperationalError, OSError))

    async def count_readings(self, vehicle_id: str | None = None) -> int:
        def count() -> int:
            if vehicle_id is None:
                return self._db.execute("SELECT count(*) FROM vehicle_telemetry").fetchone()[0]
            return self._db.execute("SELECT count(*) FROM vehicle_telemetry WHERE vehicle_id=?",
                                    (vehicle_id,)).fetchone()[0]

        return await self._run(count)



def _first_per_bucket(points: list[dict], step_ms: int) -> list[dict]:
    out, last = [], None
    for p in points:
        bucket = p["time_ms"] // step_ms
        if bucket != last:
            out.append(p)
            last = bucket
    return out

