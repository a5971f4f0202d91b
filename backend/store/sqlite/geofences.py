"""Geofences in the embedded store: CRUD, which vehicles are inside one now, entries into one
geofence and one vehicle's entries into every geofence (shapely tests the points)."""

from __future__ import annotations

import json

from geostream.clock import wall_ms

from ..base import entry_indexes
from .db import SqliteDb

_GEOFENCE_COLUMNS = ("geofence_id, name, area, speed_limit_kmh, circle, created_ms, updated_ms, "
                     "group_name")
_POSITION_COLUMNS = "vehicle_id, time_ms, lat, lon, speed_kmh, course_deg, epoch, seq"


def _geofence(r: tuple) -> dict:
    return dict(geofence_id=r[0], name=r[1], area=json.loads(r[2]), speed_limit_kmh=r[3],
                circle=None if r[4] is None else json.loads(r[4]), created_ms=r[5],
                updated_ms=r[6], group=r[7])


def _position(r: tuple) -> dict:
    return dict(zip(_POSITION_COLUMNS.split(", "), r, strict=True))


class SqliteGeofences(SqliteDb):
    async def put_geofence(self, geofence_id: str, name: str, area: dict,
                           speed_limit_kmh: float | None = None, circle: dict | None = None,
                           create_only: bool = False, group: str | None = None) -> bool:
        """Create or replace a geofence (`area`: GeoJSON Polygon or MultiPolygon, lon/lat) of
        `group` (None: fleet-wide). True if it was created; with `create_only` an existing one
        is left alone (False)."""
        import shapely.geometry  # here: the store opens without shapely and numpy

        shape = shapely.geometry.shape(area)
        if shape.geom_type not in ("Polygon", "MultiPolygon") or not shape.is_valid:
            raise ValueError("geofence must be a valid GeoJSON Polygon or MultiPolygon")
        now = wall_ms()
        row = (geofence_id, name, json.dumps(area), now, speed_limit_kmh,
               None if circle is None else json.dumps(circle), now, group)

        def put() -> bool:
            db = self._db
            exists = db.execute("SELECT 1 FROM geofences WHERE geofence_id=?",
                                (geofence_id,)).fetchone() is not None
            if exists and create_only:
                return False
            db.execute(
                "INSERT INTO geofences (geofence_id, name, area, created_ms, speed_limit_kmh, "
                "circle, updated_ms, group_name) VALUES (?,?,?,?,?,?,?,?) "
                "ON CONFLICT (geofence_id) DO UPDATE SET name=excluded.name, "
                "area=excluded.area, speed_limit_kmh=excluded.speed_limit_kmh, "
                "circle=excluded.circle, updated_ms=excluded.updated_ms, "
                "group_name=excluded.group_name", row)
            return not exists

        return await self._run(put)

    async def geofences(self) -> list[dict]:
        def rows():
            cur = self._db.execute(f"SELECT {_GEOFENCE_COLUMNS} FROM geofences ORDER BY 1")
            return [_geofence(r) for r in cur]

        return await self._run(rows)

    async def geofence(self, geofence_id: str) -> dict | None:
        def row():
            r = self._db.execute(f"SELECT {_GEOFENCE_COLUMNS} FROM geofences "
                                 "WHERE geofence_id=?", (geofence_id,)).fetchone()
            return None if r is None else _geofence(r)

        return await self._run(row)

    async def delete_geofence(self, geofence_id: str) -> bool:
        def delete() -> bool:
            return self._db.execute("DELETE FROM geofences WHERE geofence_id=?",
                                    (geofence_id,)).rowcount > 0

        return await self._run(delete)

    async def inside(self, geofence_id: str) -> list[dict] | None:
        """Last positions inside the geofence now (None: no such geofence)."""
        def rows():
            g = self._db.execute("SELECT area FROM geofences WHERE geofence_id=?",
                                 (geofence_id,)).fetchone()
            if g is None:
                return None
            import shapely.geometry

            area = shapely.geometry.shape(json.loads(g[0]))
            self._last_written()
            last = [_position(r) for r in self._db.execute(
                f"SELECT {_POSITION_COLUMNS} FROM last_position ORDER BY vehicle_id")]
            flags = shapely.intersects_xy(area, [p["lon"] for p in last],
                                          [p["lat"] for p in last]) if last else []
            return [p for p, inside in zip(last, flags, strict=True) if inside]

        return await self._run(rows)

    async def vehicle_geofence_entries(self, vehicle_id: str, start_ms: int,
                                       end_ms: int) -> list[dict]:
        """The vehicle's outside→inside transitions into every geofence in [start, end),
        ordered by (time, epoch, seq, geofence); the point before the window counts."""
        def entries():
            db = self._db
            before = db.execute(
                "SELECT time_ms, lat, lon, epoch, seq FROM vehicle_telemetry "
                "WHERE vehicle_id=? AND kind='pos' AND lat IS NOT NULL AND time_ms < ? "
                "ORDER BY time_ms DESC, epoch DESC, seq DESC LIMIT 1",
                (vehicle_id, start_ms)).fetchall()
            pts = before + db.execute(
                "SELECT time_ms, lat, lon, epoch, seq FROM vehicle_telemetry "
                "WHERE vehicle_id=? AND kind='pos' AND lat IS NOT NULL "
                "AND time_ms >= ? AND time_ms < ? ORDER BY time_ms, epoch, seq",
                (vehicle_id, start_ms, end_ms)).fetchall()
            out: list[dict] = []
            if not pts:
                return out
            import shapely.geometry

            for gid, area in db.execute("SELECT geofence_id, area FROM geofences ORDER BY 1"):
                shape = shapely.geometry.shape(json.loads(area))
                flags = shapely.intersects_xy(shape, [p[2] for p in pts], [p[1] for p in pts])
                for i in entry_indexes(list(flags), len(before)):
                    t, lat, lon, epoch, seq = pts[i]
                    out.append(dict(geofence_id=gid, vehicle_id=vehicle_id, time_ms=t,
                                    lat=lat, lon=lon, epoch=epoch, seq=seq))
            out.sort(key=lambda e: (e["time_ms"], e["epoch"], e["seq"], e["geofence_id"]))
            return out

        return await self._run(entries)

    async def geofence_entries(self, geofence_id: str, start_ms: int,
                               end_ms: int) -> list[dict]:
        """Outside→inside transitions in [start, end), on each vehicle's points ordered by
        device time. The point before the window counts as the predecessor of the first."""
        def entries():
            row = self._db.execute("SELECT area FROM geofences WHERE geofence_id=?",
                                   (geofence_id,)).fetchone()
            if row is None:
                return []
            import shapely.geometry

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
