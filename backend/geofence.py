"""Geofence shapes from GeoJSON (sans-IO): validation, circles and their polygon.

A circle (centre + radius) is stored with its polygon approximation as the area, so every
query (entries, inside, alert rules) sees one geometry on both stores. The polygon's vertices
lie on the circle, so its edges cut inside it by at most r·(1 − cos(π/n)).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# 64 vertices: the chord falls at most 0.12 % of the radius inside the circle (1.2 m at 1 km).
CIRCLE_VERTICES = 64
MAX_RADIUS_M = 100_000  # bigger than any depot or city zone; the spherical formula still holds
MAX_NAME = 200
ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
GROUP_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")  # as user and group names
UNSET = "unset"  # `Geofence.group` of a body that names no group (PUT keeps the stored one)
EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class Geofence:
    id: str | None
    name: str
    area: dict  # GeoJSON Polygon or MultiPolygon (lon, lat)
    speed_limit_kmh: float | None = None
    circle: dict | None = None  # {"center": [lon, lat], "radius_m": r}
    group: str | None = UNSET  # the vehicle group it belongs to; None: fleet-wide


def circle_polygon(lon: float, lat: float, radius_m: float,
                   vertices: int = CIRCLE_VERTICES) -> dict:
    """A GeoJSON Polygon whose vertices lie `radius_m` from the centre (great-circle)."""
    d = radius_m / EARTH_RADIUS_M
    p1, l1 = math.radians(lat), math.radians(lon)
    ring = []
    for i in range(vertices):
        b = 2 * math.pi * i / vertices
        p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
        l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1),
                             math.cos(d) - math.sin(p1) * math.sin(p2))
        ring.append([round(math.degrees(l2), 7), round(math.degrees(p2), 7)])
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number")
    return float(value)


def check_area(area) -> dict:
    """A valid GeoJSON Polygon or MultiPolygon in lon/lat range, or ValueError."""
    if not isinstance(area, dict) or area.get("type") not in ("Polygon", "MultiPolygon"):
        raise ValueError("geometry must be a GeoJSON Polygon or MultiPolygon")
    import shapely.geometry  # here: a backend or command starts without shapely and numpy

    try:
        shape = shapely.geometry.shape(area)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise ValueError(f"bad coordinates: {exc}") from None
    if shape.is_empty or not shape.is_valid:
        raise ValueError("the polygon is empty or invalid (self-intersecting?)")
    minx, miny, maxx, maxy = shape.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise ValueError("coordinates must be [lon, lat] in WGS84 range")
    return area


def from_feature(feature, geofence_id: str | None = None) -> Geofence:
    """Parse a POST/PUT body (a GeoJSON Feature; docs in backend/openapi.yaml GeofenceInput)."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValueError("expected a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise ValueError("properties must be an object")
    name = props.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise ValueError(f"properties.name must be text of 1..{MAX_NAME}")
    for holder in (feature, props):  # on PUT too, though the path wins
        if "id" in holder and (not isinstance(holder["id"], str)
                               or not ID_PATTERN.match(holder["id"])):
            raise ValueError("id must be 1..64 of A-Z a-z 0-9 _ . -")
    gid = geofence_id or feature.get("id") or props.get("id")
    limit = props.get("speed_limit_kmh")
    if limit is not None and _number(limit, "speed_limit_kmh") <= 0:
        raise ValueError("speed_limit_kmh must be positive")
    circle = props.get("circle")
    if circle is not None:
        if not isinstance(circle, dict):
            raise ValueError("circle must be {center: [lon, lat], radius_m}")
        center = circle.get("center")
        if not isinstance(center, list) or len(center) != 2:
            raise ValueError("circle.center must be [lon, lat]")
        lon, lat = _number(center[0], "lon"), _number(center[1], "lat")
        radius = _number(circle.get("radius_m"), "circle.radius_m")
        if not (-180 <= lon <= 180 and -85 <= lat <= 85):
            raise ValueError("circle.center out of range (|lat| ≤ 85)")
        if not 0 < radius <= MAX_RADIUS_M:
            raise ValueError(f"circle.radius_m must be in (0, {MAX_RADIUS_M}]")
        circle = {"center": [lon, lat], "radius_m": radius}
        if feature.get("geometry") is not None:  # what the drawing showed: checked, not kept
            check_area(feature["geometry"])
        area = circle_polygon(lon, lat, radius)
    else:
        area = check_area(feature.get("geometry"))
    group = props.get("group", UNSET)
    if group not in (UNSET, None) and (not isinstance(group, str)
                                       or not GROUP_PATTERN.match(group)):
        raise ValueError("properties.group must be a group name or null")
    return Geofence(id=gid, name=name, area=area,
                    speed_limit_kmh=None if limit is None else float(limit), circle=circle,
                    group=group)


def to_feature(row: dict) -> dict:
    """A stored geofence (Store.geofences() row) as the API's GeoJSON Feature."""
    gid = row["geofence_id"]
    return {"type": "Feature", "id": gid, "geometry": row["area"],
            "properties": {"id": gid, "name": row["name"],
                           "speed_limit_kmh": row.get("speed_limit_kmh"),
                           "circle": row.get("circle"),
                           "group": row.get("group"),
                           "created_ms": row.get("created_ms"),
                           "updated_ms": row.get("updated_ms")}}
