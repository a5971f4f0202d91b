"""Queries over the embedded store's readings: last positions, a vehicle's route (optionally
one point per time bucket), the quality of each last fix, the newest CAN values, one CAN
signal's series, events by name, counts and dead letters."""

from __future__ import annotations

import json

from .db import SqliteDb
from .readings import PART

# The reading of each last position, moved or not (sql/sqlite/0031), each found by its key:
# the view would scan the arrivals for this join. A reading in both (re-sent after its move,
# not moved again yet) gives the same columns twice.
_LAST_FIXES = (
    "SELECT p.vehicle_id, t.fix, t.sats, t.hdop FROM last_position p "
    "CROSS JOIN telemetry_by_vehicle t USING (vehicle_id, time_ms, epoch, seq) "
    "UNION ALL "
    "SELECT p.vehicle_id, a.fix, a.sats, a.hdop FROM last_position p "
    f"CROSS JOIN telemetry_arrivals a ON a.part = {PART.format(v='p.vehicle_id')} "
    "AND a.time_ms = p.time_ms AND a.vehicle_id = p.vehicle_id AND a.epoch = p.epoch "
    "AND a.seq = p.seq")

# a position's columns as the queries return them
_POINT = "time_ms, lat, lon, speed_kmh, course_deg, epoch, seq"


def _path(name: str) -> str:
    return '$."' + name.replace('"', '') + '"'


class SqliteHistory(SqliteDb):
    async def last_positions(self) -> list[dict]:
        def rows():
            self._last_written()
            cur = self._db.execute(
                f"SELECT vehicle_id, {_POINT} FROM last_position ORDER BY vehicle_id")
            keys = ("vehicle_id", *_POINT.split(", "))
            return [dict(zip(keys, r, strict=True)) for r in cur]

        return await self._run(rows)

    async def route(self, vehicle_id: str, start_ms: int, end_ms: int,
                    step_ms: int | None = None, limit: int | None = None) -> list[dict]:
        """Positions in [start, end) by device time; with `step_ms`, the first of each bucket;
        at most `limit` (in SQL). Read on the read connection, off the writer's."""
        where = ("WHERE vehicle_id=? AND kind='pos' AND lat IS NOT NULL AND lon IS NOT NULL "
                 "AND time_ms >= ? AND time_ms < ?")
        if step_ms:
            sql = (f"SELECT {_POINT} FROM (SELECT {_POINT}, row_number() OVER (PARTITION BY "
                   f"time_ms / ? ORDER BY time_ms, epoch, seq) AS n FROM vehicle_telemetry "
                   f"{where}) WHERE n = 1 ORDER BY time_ms, epoch, seq LIMIT ?")
            args: tuple = (step_ms, vehicle_id, start_ms, end_ms, -1 if limit is None else limit)
        else:
            sql = (f"SELECT {_POINT} FROM vehicle_telemetry {where} "
                   "ORDER BY time_ms, epoch, seq LIMIT ?")
            args = (vehicle_id, start_ms, end_ms, -1 if limit is None else limit)

        def rows():
            return [dict(zip(_POINT.split(", "), r, strict=True))
                    for r in self._rdb.execute(sql, args)]

        return await self._read(rows)

    async def last_fixes(self) -> dict[str, dict]:
        """{vehicle: {"fix", "sats", "hdop"}}: the quality of each vehicle's last position."""
        def rows():
            self._last_written()
            cur = self._db.execute(_LAST_FIXES)
            return {r[0]: {"fix": r[1], "sats": r[2], "hdop": r[3]} for r in cur}

        return await self._run(rows)

    async def last_signals(self) -> dict[str, dict[str, dict]]:
        """{vehicle: {signal: {"value", "time_ms"}}}: the newest value of each CAN signal."""
        def rows():
            self._last_written()
            out: dict[str, dict[str, dict]] = {}
            for v, s, value, t in self._db.execute(
                    "SELECT vehicle_id, signal, value, time_ms FROM last_signal ORDER BY 1, 2"):
                out.setdefault(v, {})[s] = {"value": json.loads(value), "time_ms": t}
            return out

        return await self._run(rows)

    async def signal_series(self, vehicle_id: str, signal: str, start_ms: int, end_ms: int,
                            limit: int, newest_first: bool = False) -> list[tuple[int, float]]:
        """(time_ms, value) of one CAN signal in [start, end), by device time."""
        order = "DESC" if newest_first else "ASC"

        def rows():
            cur = self._db.execute(
                "SELECT time_ms, json_extract(data, ?) AS v FROM vehicle_telemetry "
                "WHERE vehicle_id=? AND kind='can' AND time_ms >= ? AND time_ms < ? "
                f"AND v IS NOT NULL ORDER BY time_ms {order} LIMIT ?",
                (_path(signal), vehicle_id, start_ms, end_ms, limit))
            return [(t, float(v)) for t, v in cur if isinstance(v, int | float)]

        return await self._run(rows)

    async def events(self, vehicle_id: str, name: str, start_ms: int, end_ms: int,
                     limit: int) -> list[tuple[int, dict]]:
        """(time_ms, data) of the vehicle's `evt` readings named `name`, oldest first."""
        def rows():
            cur = self._db.execute(
                "SELECT time_ms, data FROM vehicle_telemetry WHERE vehicle_id=? AND kind='evt' "
                "AND time_ms >= ? AND time_ms < ? AND json_extract(data, '$.name') = ? "
                "ORDER BY time_ms LIMIT ?", (vehicle_id, start_ms, end_ms, name, limit))
            return [(t, json.loads(d)) for t, d in cur]

        return await self._run(rows)

    async def signal_frames(self, vehicle_id: str, signals: list[str], start_ms: int,
                            end_ms: int, limit: int) -> list[tuple[int, dict]]:
        wanted = list(dict.fromkeys(signals))
        if not wanted:
            return []
        any_of = " OR ".join("json_type(data, ?) IS NOT NULL" for _ in wanted)

        def rows():
            cur = self._db.execute(
                "SELECT time_ms, data FROM vehicle_telemetry WHERE vehicle_id=? AND kind='can' "
                f"AND time_ms >= ? AND time_ms < ? AND ({any_of}) ORDER BY time_ms LIMIT ?",
                (vehicle_id, start_ms, end_ms, *map(_path, wanted), limit))
            out = []
            for t, d in cur:
                data = json.loads(d)
                out.append((t, {k: data[k] for k in wanted if k in data}))
            return out

        return await self._run(rows)

    async def readings_fingerprint(self, vehicle_id: str, start_ms: int, end_ms: int) -> str:
        def row():  # one range of the table's key (vehicle, time, epoch, seq)
            return self._rdb.execute(
                "SELECT count(*), coalesce(max(epoch), 0), coalesce(sum(seq), 0) FROM "
                "vehicle_telemetry WHERE vehicle_id=? AND time_ms >= ? AND time_ms < ?",
                (vehicle_id, start_ms, end_ms)).fetchone()

        n, epoch, seqs = await self._read(row)
        return f"{n}:{epoch}:{seqs}"

    async def count_readings(self, vehicle_id: str | None = None) -> int:
        def count() -> int:
            if vehicle_id is None:
                return self._db.execute("SELECT count(*) FROM vehicle_telemetry").fetchone()[0]
            return self._db.execute("SELECT count(*) FROM vehicle_telemetry WHERE vehicle_id=?",
                                    (vehicle_id,)).fetchone()[0]

        return await self._run(count)

    async def dead_letters(self) -> list[dict]:
        def rows():
            cur = self._db.execute(
                "SELECT vehicle_id, epoch, seq, reading, error FROM dead_letter ORDER BY id")
            return [dict(vehicle_id=a, epoch=b, seq=c, reading=json.loads(d), error=e)
                    for a, b, c, d, e in cur]

        return await self._run(rows)

