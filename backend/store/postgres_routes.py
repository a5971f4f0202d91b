"""Positions over time in the PostgreSQL store: last positions, a vehicle's route (optionally
one point per time bucket) and geofence entries (mixed into PostgresStore, which owns the
asyncpg pool)."""

from __future__ import annotations

from .postgres_sql import EPOCH_MS as _EPOCH_MS
from .postgres_sql import MS as _MS

_POINT_COLUMNS = (f"{_EPOCH_MS.format('time')} AS time_ms, ST_Y(location) AS lat, "
                  "ST_X(location) AS lon, speed_kmh, course_deg, epoch, seq")


class PostgresRoutes:
    async def last_positions(self) -> list[dict]:
        rows = await self._pool.fetch(
            f"SELECT vehicle_id, {_POINT_COLUMNS} FROM last_position ORDER BY vehicle_id")
        return [dict(r) for r in rows]

    async def route(self, vehicle_id: str, start_ms: int, end_ms: int,
                    step_ms: int | None = None) -> list[dict]:
        """Positions in [start, end) by device time; with `step_ms`, the first of each bucket."""
        where = (f"vehicle_id = $1 AND kind = 'pos' AND location IS NOT NULL "
                 f"AND time >= {_MS.format('$2::bigint')} AND time < {_MS.format('$3::bigint')}")
        if step_ms:
            sql = (f"SELECT time_ms, lat, lon, speed_kmh, course_deg, epoch, seq FROM ("
                   f"SELECT DISTINCT ON (bucket) * FROM (SELECT {_POINT_COLUMNS}, "
                   f"floor({_EPOCH_MS.format('time')}::numeric / $4) AS bucket "
                   f"FROM vehicle_telemetry WHERE {where}) b "
                   f"ORDER BY bucket, time_ms, epoch, seq) d ORDER BY time_ms, epoch, seq")
            args = (vehicle_id, start_ms, end_ms, step_ms)
        else:
            sql = (f"SELECT {_POINT_COLUMNS} FROM vehicle_telemetry WHERE {where} "
                   f"ORDER BY time, epoch, seq")
            args = (vehicle_id, start_ms, end_ms)
        return [dict(r) for r in await self._pool.fetch(sql, *args)]

    async def geofence_entries(self, geofence_id: str, start_ms: int,
                               end_ms: int) -> list[dict]:
        """Outside→inside transitions in [start, end), on each vehicle's points ordered by
        device time. The point before the window counts as the predecessor of the first."""
        lo, hi = _MS.format("$2::bigint"), _MS.format("$3::bigint")  # plain expressions,
        # not a CTE, so the planner can prune partitions at executor start-up
        sql = f"""
        WITH g AS MATERIALIZED (SELECT area FROM geofences WHERE geofence_id = $1),
        candidates AS (          -- vehicles with at least one point inside (GIST index)
            SELECT DISTINCT t.vehicle_id FROM vehicle_telemetry t, g
            WHERE t.kind = 'pos' AND t.time >= {lo} AND t.time < {hi}
              AND ST_Intersects(t.location, g.area)),
        pts AS (
            SELECT t.vehicle_id, t.time, t.epoch, t.seq, t.location
            FROM vehicle_telemetry t JOIN candidates c USING (vehicle_id)
            WHERE t.kind = 'pos' AND t.location IS NOT NULL
              AND t.time >= {lo} AND t.time < {hi}
            UNION ALL
            SELECT c.vehicle_id, p.time, p.epoch, p.seq, p.location
            FROM candidates c, LATERAL (
                SELECT time, epoch, seq, location FROM vehicle_telemetry t
                WHERE t.vehicle_id = c.vehicle_id AND t.kind = 'pos'
                  AND t.location IS NOT NULL AND t.time < {lo}
                ORDER BY time DESC, epoch DESC, seq DESC LIMIT 1) p),
        flagged AS (
            SELECT pts.*, ST_Intersects(pts.location, g.area) AS inside FROM pts, g),
        ordered AS (
            SELECT flagged.*, lag(inside) OVER (PARTITION BY vehicle_id
                                               ORDER BY time, epoch, seq) AS was_inside
            FROM flagged)
        SELECT vehicle_id, {_EPOCH_MS.format('time')} AS time_ms, ST_Y(location) AS lat,
               ST_X(location) AS lon, epoch, seq
        FROM ordered
        WHERE inside AND NOT was_inside AND time >= {lo}
        ORDER BY vehicle_id, time, epoch, seq"""
        return [dict(r) for r in await self._pool.fetch(sql, geofence_id, start_ms, end_ms)]
