"""Geofences from the store as the rules' `Fence` values (polygon via Shapely, or a circle)."""

from __future__ import annotations

import math

from .evaluate import Fence

EARTH_R_M = 6_371_000.0


def _circle(center: list, radius_m: float):
    lon0, lat0 = map(math.radians, center)

    def contains(lat: float, lon: float) -> bool:
        la, lo = math.radians(lat), math.radians(lon)
        h = (math.sin((la - lat0) / 2) ** 2
             + math.cos(la) * math.cos(lat0) * math.sin((lo - lon0) / 2) ** 2)
        return 2 * EARTH_R_M * math.asin(math.sqrt(min(1.0, h))) <= radius_m

    return contains


def _area(geojson: dict):
    """(one point's test, many points' test): the same prepared predicate, per point or over
    arrays (a tick's positions tested together: ~40x less per point)."""
    import shapely.geometry  # here: a backend whose fences are all circles, or none, starts
    # without shapely and numpy

    shape = shapely.geometry.shape(geojson)
    shapely.prepare(shape)
    return (lambda lat, lon: bool(shapely.intersects_xy(shape, lon, lat)),
            lambda lats, lons: shapely.intersects_xy(shape, lons, lats).tolist())


def fences_from_rows(rows: list[dict]) -> list[Fence]:
    """`store.geofences()` rows → fences; a row with `circle: {center: [lon, lat], radius_m}` is
    tested by great-circle distance, any other by its `area` GeoJSON."""
    out = []
    for row in rows:
        circle = row.get("circle")
        many = None
        if isinstance(circle, dict) and "center" in circle and "radius_m" in circle:
            contains = _circle(circle["center"], float(circle["radius_m"]))
        else:
            contains, many = _area(row["area"])
        limit = row.get("speed_limit_kmh")
        out.append(Fence(str(row["geofence_id"]), contains,
                         None if limit is None else float(limit), many))
    return out
