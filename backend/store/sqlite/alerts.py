"""Alert and evaluator-checkpoint tables of the SQLite store (sql/sqlite/0005_alerts.sql)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ..base import TIME_RULES, AlertQuery, StoredAlert, StoredReading
from .db import SqliteDb, transaction

_READING_COLUMNS = ("vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh, "
                    "course_deg, fix, sats, hdop, data, received_ms")
_ALERT_COLUMNS = ("id, rule, vehicle_id, subject, start_ms, end_ms, peak, state, lat, lon, "
                  "detail, decided_ms, acknowledged_by, acknowledged_ms")
_KEY = "rule=? AND vehicle_id=? AND subject=? AND start_ms=?"
_NOT_TIMED = f"rule NOT IN ({', '.join(repr(r) for r in TIME_RULES)})"


def _alert(r: tuple) -> StoredAlert:
    return StoredAlert(*r[:10], json.loads(r[10]), *r[11:])  # type: ignore[call-arg]



_AFTER = f"SELECT {_READING_COLUMNS} FROM vehicle_telemetry WHERE vehicle_id=? AND time_ms > ?"
_ORDER = " ORDER BY time_ms, epoch, seq"


def _readings_after(db, vehicle_id: str, after_ms: int | None,
                    held: tuple[int, int, int] | None = None) -> list[StoredReading]:
    """The vehicle's readings after `after_ms`, less those of `held` = (epoch, low, high)."""
    bound = -(2**63) if after_ms is None else after_ms
    if held is None:
        cur = db.execute(_AFTER + _ORDER, (vehicle_id, bound))
    else:
        cur = db.execute(_AFTER + " AND NOT (epoch=? AND seq BETWEEN ? AND ?)" + _ORDER,
                         (vehicle_id, bound, *held))
    return [StoredReading.from_row(r) for r in cur]


def _readings_of(db, asks: Sequence[tuple[str, int | None]],
                 held: Mapping[str, tuple[int, int, int]]) -> dict[str, list[StoredReading]]:
    """`_readings_after` of each ask, by vehicle, leaving out empty answers."""
    out = {}
    for vehicle, after_ms in asks:
        found = _readings_after(db, vehicle, after_ms, held.get(vehicle))
        if found:
            out[vehicle] = found
    return out


def _checkpoint_before(db, vehicle_id: str, before_ms: int | None) -> tuple[int, dict] | None:
    r = db.execute(
        "SELECT time_ms, state FROM alert_checkpoints WHERE vehicle_id=? AND time_ms < ? "
        "ORDER BY time_ms DESC LIMIT 1",
        (vehicle_id, 2**63 - 1 if before_ms is None else before_ms)).fetchone()
    return None if r is None else (r[0], json.loads(r[1]))


def _in_window(db, vehicle_id: str, after_ms: int | None) -> list[StoredAlert]:
    cur = db.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE vehicle_id=? AND {_NOT_TIMED} "
        "AND (end_ms IS NULL OR decided_ms > ?) ORDER BY start_ms",
        (vehicle_id, -(2**63) if after_ms is None else after_ms))
    return [_alert(r) for r in cur]


def _each(one, db, asks: Sequence[tuple[str, int | None]]) -> dict:
    """`one(db, vehicle, bound)` of each ask, by vehicle, leaving out empty answers (the
    many-vehicle reads: on the store's thread, one hand-off for all)."""
    out = {}
    for vehicle, bound in asks:
        found = one(db, vehicle, bound)
        if found:
            out[vehicle] = found
    return out


def _save_changes(db, upserts: list, retract: list[tuple], now_ms: int,
                  checkpoints: tuple | None, moves: Sequence) -> list[tuple[StoredAlert, bool]]:
    """One vehicle's `save_alerts`, in the caller's transaction."""
    out = []
    for e in upserts:
        old = db.execute(f"SELECT id FROM alerts WHERE {_KEY}", e.key).fetchone()
        values = (e.end_ms, e.peak, e.state, e.lat, e.lon,
                  json.dumps(e.detail, default=str), e.decided_ms, now_ms)
        if old is None:
            db.execute(
                "INSERT INTO alerts (end_ms, peak, state, lat, lon, detail, "
                "decided_ms, updated_ms, rule, vehicle_id, subject, start_ms, "
                "created_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, *e.key, now_ms))
        else:
            db.execute("UPDATE alerts SET end_ms=?, peak=?, state=?, lat=?, lon=?, "
                       "detail=?, decided_ms=?, updated_ms=? WHERE id=?",
                       (*values, old[0]))
        out.append((_alert(db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts "
                                      f"WHERE {_KEY}", e.key).fetchone()),
                    old is None))
    for old_key, e in moves:
        db.execute(f"DELETE FROM alerts WHERE {_KEY} AND state='retracted'", e.key)
        db.execute(
            "UPDATE alerts SET start_ms=?, end_ms=?, peak=?, state=?, lat=?, lon=?, "
            f"detail=?, decided_ms=?, updated_ms=? WHERE {_KEY}",
            (e.start_ms, e.end_ms, e.peak, e.state, e.lat, e.lon,
             json.dumps(e.detail, default=str), e.decided_ms, now_ms, *old_key))
        out.append((_alert(db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts "
                                      f"WHERE {_KEY}", e.key).fetchone()), False))
    for key in retract:
        db.execute(f"UPDATE alerts SET state='retracted', updated_ms=? WHERE {_KEY}",
                   (now_ms, *key))
        r = db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {_KEY}", key).fetchone()
        if r is not None:
            out.append((_alert(r), False))
    if checkpoints is not None:
        vehicle, after_ms, points = checkpoints
        db.execute("DELETE FROM alert_checkpoints WHERE vehicle_id=? AND time_ms > ?",
                   (vehicle, -(2**63) if after_ms is None else after_ms))
        db.executemany("INSERT OR REPLACE INTO alert_checkpoints VALUES (?,?,?)",
                       [(vehicle, t, json.dumps(state)) for t, state in points])
    return out


class SqliteAlerts(SqliteDb):
    @staticmethod
    def as_read_back(r: StoredReading) -> StoredReading:
        """A committed reading as alert_readings would return it: as written (REAL is a
        double, as Python's float)."""
        return r

    """Mixed into SqliteStore: every call runs on the store's one worker thread."""

    async def alert_readings(self, vehicle_id: str, after_ms: int | None) -> list[StoredReading]:
        return await self._run(_readings_after, self._db, vehicle_id, after_ms)

    async def alert_checkpoint(self, vehicle_id: str,
                               before_ms: int | None) -> tuple[int, dict] | None:
        return await self._run(_checkpoint_before, self._db, vehicle_id, before_ms)

    async def alerts_in_window(self, vehicle_id: str, after_ms: int | None) -> list[StoredAlert]:
        return await self._run(_in_window, self._db, vehicle_id, after_ms)

    async def alert_readings_after(self, asks: Sequence[tuple[str, int | None]],
                                   held: Mapping[str, tuple[int, int, int]] | None = None
                                   ) -> dict[str, list[StoredReading]]:
        return await self._run(_readings_of, self._db, asks, held or {})

    async def alert_checkpoints_before(self, asks: Sequence[tuple[str, int | None]]
                                       ) -> dict[str, tuple[int, dict]]:
        return await self._run(_each, _checkpoint_before, self._db, asks)

    async def alerts_in_windows(self, asks: Sequence[tuple[str, int | None]]
                                ) -> dict[str, list[StoredAlert]]:
        return await self._run(_each, _in_window, self._db, asks)

    async def save_alerts(self, upserts: list, retract: list[tuple], now_ms: int,
                          checkpoints: tuple | None = None,
                          moves: Sequence = ()) -> list[tuple[StoredAlert, bool]]:
        return (await self.save_alerts_many([(upserts, retract, checkpoints, moves)],
                                            now_ms))[0]

    async def save_alerts_many(self, saves: Sequence[tuple[list, list[tuple], tuple | None,
                                                           Sequence]],
                               now_ms: int) -> list[list[tuple[StoredAlert, bool]]]:
        def save():
            db = self._db
            with transaction(db):
                return [_save_changes(db, upserts, retract, now_ms, checkpoints, moves)
                        for upserts, retract, checkpoints, moves in saves]

        return await self._run(save)

    async def save_alert_checkpoints(self, points: list[tuple[str, int, dict]]) -> None:
        """Checkpoints of many vehicles, (vehicle, time_ms, state) each, in one transaction."""
        def save():
            db = self._db
            with transaction(db):
                db.executemany("INSERT OR REPLACE INTO alert_checkpoints VALUES (?,?,?)",
                               [(v, t, json.dumps(state)) for v, t, state in points])

        return await self._run(save)

    async def prune_alert_checkpoints(self, before_ms: int) -> int:
        def prune() -> int:
            return self._db.execute(
                "DELETE FROM alert_checkpoints WHERE time_ms < ? AND time_ms < (SELECT "
                "max(time_ms) FROM alert_checkpoints c WHERE c.vehicle_id = "
                "alert_checkpoints.vehicle_id)", (before_ms,)).rowcount

        return await self._run(prune)

    async def list_alerts(self, query: AlertQuery) -> list[StoredAlert]:
        where: list[str] = []
        args: list[object] = []
        if query.vehicle is not None:
            where.append("vehicle_id=?")
            args.append(query.vehicle)
        if query.vehicles is not None:
            where.append(f"vehicle_id IN ({', '.join('?' * len(query.vehicles)) or 'NULL'})")
            args.extend(sorted(query.vehicles))
        if query.rule is not None:
            where.append("rule=?")
            args.append(query.rule)
        if query.state is None:
            where.append("state IN ('open', 'closed')")
        else:
            where.append("state=?")
            args.append(query.state)
        if query.acknowledged is not None:
            where.append("acknowledged_ms IS NOT NULL" if query.acknowledged
                         else "acknowledged_ms IS NULL")
        if query.to_ms is not None:
            where.append("start_ms < ?")
            args.append(query.to_ms)
        if query.from_ms is not None:
            where.append("(end_ms IS NULL OR end_ms >= ?)")
            args.append(query.from_ms)

        def rows():
            cur = self._db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)} "
                "ORDER BY start_ms DESC, id DESC LIMIT ?", (*args, query.limit))
            return [_alert(r) for r in cur]

        return await self._run(rows)

    async def alert(self, alert_id: int) -> StoredAlert | None:
        def row():
            r = self._db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id=?",
                                 (alert_id,)).fetchone()
            return None if r is None else _alert(r)

        return await self._run(row)

    async def ack_alert(self, alert_id: int, user: str, now_ms: int) -> StoredAlert | None:
        def ack():
            self._db.execute("UPDATE alerts SET acknowledged_by=?, acknowledged_ms=?, "
                             "updated_ms=? WHERE id=? AND acknowledged_ms IS NULL",
                             (user, now_ms, now_ms, alert_id))
            r = self._db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id=?",
                                 (alert_id,)).fetchone()
            return None if r is None else _alert(r)

        return await self._run(ack)

    async def alerts_after(self, after_id: int, limit: int) -> list[StoredAlert]:
        def rows():
            return [_alert(r) for r in self._db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit))]

        return await self._read(rows)
