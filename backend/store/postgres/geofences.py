"""Geofences in the PostgreSQL store: CRUD, which vehicles are inside one now (GIST index),
entries into one geofence and one vehicle's entries into every geofence (PostGIS tests the
points)."""

from __future__ import annotations

import json

from .db import EPOCH_MS as _EPOCH_MS
from .db import MS as _MS
from .db import PostgresDb

_GEOFENCE_COLUMNS = (f"geofence_id, name, ST_AsGeoJSON(area), speed_limit_kmh, circle, "
                     f"{_EPOCH_MS.format('created_at')}, {_EPOCH_MS.format('updated_at')}, "
                     "group_name")
_POSITION_COLUMNS = (f"vehicle_id, {_EPOCH_MS.format('p.time')} AS time_ms, "
                     "ST_Y(p.location) AS lat, ST_X(p.location) AS lon, p.speed_kmh, p.course_deg, "
                     "p.epoch, p.seq")


def _geofence(r) -> dict:
    return dict(geofence_id=r[0], name=r[1], area=json.loads(r[2]),
                speed_limit_kmh=None if r[3] is None else float(r[3]),
                circle=None if r[4] is None else json.loads(r[4]), created_ms=r[5],
                updated_ms=r[6], group=r[7])


class PostgresGeofences(PostgresDb):
    async def put_geofence(self, geofence_id: str, name: str, area: dict,
                           speed_limit_kmh: float | None = None, circle: dict | None = None,
                           create_only: bool = False, group: str | None = None) -> bool:
        """Create or replace a geofence (`area`: GeoJSON Polygon or MultiPolygon, lon/lat) of
        `group` (None: fleet-wide). True if it was created; with `create_only` an existing one
        is left alone (False)."""
        if area.get("type") not in ("Polygon", "MultiPolygon"):
            raise ValueError("geofence must be a GeoJSON Polygon or MultiPolygon")
        conflict = ("DO NOTHING" if create_only else
                    "DO UPDATE SET name = excluded.name, area = excluded.area, "
                    "speed_limit_kmh = excluded.speed_limit_kmh, circle = excluded.circle, "
                    "group_name = excluded.group_name, updated_at = now()")
        created = await self._pool.fetchval(
            "INSERT INTO geofences (geofence_id, name, area, speed_limit_kmh, circle, "
            "updated_at, group_name) VALUES ($1, $2, ST_SetSRID(ST_GeomFromGeoJSON($3), 4326), "
            f"$4, $5::jsonb, now(), $6) ON CONFLICT (geofence_id) {conflict} "
            "RETURNING (xmax = 0)",  # xmax 0: a new row, not an updated one
            geofence_id, name, json.dumps(area), speed_limit_kmh,
            None if circle is None else json.dumps(circle), group)
        return bool(created)

    async def geofences(self) -> list[dict]:
        rows = await self._pool.fetch(f"SELECT {_GEOFENCE_COLUMNS} FROM geofences ORDER BY 1")
        return [_geofence(r) for r in rows]

    async def geofence(self, geofence_id: str) -> dict | None:
        r = await self._pool.fetchrow(
            f"SELECT {_GEOFENCE_COLUMNS} FROM geofences WHERE geofence_id = $1", geofence_id)
        return None if r is None else _geofence(r)

    async def delete_geofence(self, geofence_id: str) -> bool:
        status = await self._pool.execute("DELETE FROM geofences WHERE geofence_id = $1",
                                          geofence_id)
        return status != "DELETE 0"

    async def inside(self, geofence_id: str) -> list[dict] | None:
        """Last positions inside the geofence now (None: no such geofence)."""
        async with self._pool.acquire() as conn:
            if await conn.fetchval("SELECT 1 FROM geofences WHERE geofence_id = $1",
                                   geofence_id) is None:
                return None
            rows = await conn.fetch(
                f"SELECT {_POSITION_COLUMNS} FROM last_position p JOIN geofences g "
                "ON ST_Intersects(p.location, g.area) WHERE g.geofence_id = $1 "
                "ORDER BY vehicle_id", geofence_id)
        return [dict(r) for r in rows]

    async def vehicle_geofence_entries(self, vehicle_id: str, start_ms: int,
                                       end_ms: int) -> list[dict]:
        """The vehicle's outside→inside transitions into every geofence in [start, end),
        ordered by (time, epoch, seq, geofence); the point before the window counts."""
        lo, hi = _MS.format("$2::bigint"), _MS.format("$3::bigint")
        sql = f"""
        WITH pts AS (
            SELECT time, epoch, seq, location FROM vehicle_telemetry
            WHERE vehicle_id = $1 AND kind = 'pos' AND location IS NOT NULL
              AND time >= {lo} AND time < {hi}
            UNION ALL
            (SELECT time, epoch, seq, location FROM vehicle_telemetry
             WHERE vehicle_id = $1 AND kind = 'pos' AND location IS NOT NULL AND time < {lo}
             ORDER BY time DESC, epoch DESC, seq DESC LIMIT 1)),
        flagged AS (
            SELECT g.geofence_id, pts.*, ST_Intersects(pts.location, g.area) AS inside
            FROM pts CROSS JOIN geofences g),
        ordered AS (
            SELECT flagged.*, lag(inside) OVER (PARTITION BY geofence_id
                                               ORDER BY time, epoch, seq) AS was_inside
            FROM flagged)
        SELECT geofence_id, $1::text AS vehicle_id, {_EPOCH_MS.format('time')} AS time_ms,
               ST_Y(location) AS lat, ST_X(location) AS lon, epoch, seq
        FROM ordered
        WHERE inside AND NOT was_inside AND time >= {lo}
        ORDER BY time, epoch, seq, geofence_id"""
        return [dict(r) for r in await self._pool.fetch(sql, vehicle_id, start_ms, end_ms)]

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
