"""The simulator's routes as a GeoJSON road overlay, so the demo's map reads as streets.

`python -m hil.roads OUT.geojson` writes one closed LineString per route of hil.gps_sim; the
demo passes the file to the backend as `--map-overlay`.
"""

from __future__ import annotations

import json
import sys

from .gps_sim import ROUTES


def roads_geojson() -> dict:
    features = []
    for name, points in sorted(ROUTES.items()):
        ring = [[lon, lat] for lat, lon in points + points[:1]]  # closed loop, RFC 7946 order
        features.append({"type": "Feature", "properties": {"name": name, "kind": "road"},
                         "geometry": {"type": "LineString", "coordinates": ring}})
    return {"type": "FeatureCollection", "features": features}


def write(path: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(roads_geojson(), f, separators=(",", ":"))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m hil.roads OUT.geojson")
    write(sys.argv[1])
