"""A street map of the road network's extract, offline: roads by class, paths, water, parks
and buildings as one GeoJSON overlay (the web app's `map_overlay`), built once per extract and
cached by its hash next to the road graph.

    python -m backend.dispatch.streetmap EXTRACT.osm.pbf [--cache-dir DIR]   # prints the file

GeoJSON suits a city (central Helsinki: ~550 features, ~0.5 MB); a region's extract belongs in
a vector PMTiles archive (`map_pmtiles`), so extracts over `MAX_OVERLAY_EXTRACT_BYTES` are
refused here. Features carry `kind` (road, path, water, park, building), `class` (the
highway value) and `name`, which the web app styles (web/src/basemap.js).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from .roads import DRIVABLE_HIGHWAYS, RoadNetworkError, check_extract, file_sha256

# A city extract (tens of MB of PBF) gives a GeoJSON the browser still draws smoothly.
MAX_OVERLAY_EXTRACT_BYTES = 64 * 1024**2
# Ways for people, drawn thin: the map reads as a city, the planner never routes on them.
PATH_HIGHWAYS = frozenset({"footway", "pedestrian", "path", "cycleway", "steps", "track",
                           "bridleway"})
# Bump when the features or their properties change: cached overlays are then rebuilt.
OVERLAY_FORMAT = 2
# ODbL: maps made from OpenStreetMap data credit it (the web app shows this).
ATTRIBUTION = "© OpenStreetMap contributors"
# ~0.1 m: enough for a street map, a third of the bytes of full precision.
COORD_DECIMALS = 6


def _area_kind(tags) -> str | None:
    if "building" in tags:
        return "building"
    if tags.get("natural") == "water" or tags.get("waterway") == "riverbank" \
            or tags.get("landuse") in ("basin", "reservoir"):
        return "water"
    if tags.get("leisure") in ("park", "garden") or tags.get("landuse") in ("grass", "forest",
                                                                            "meadow"):
        return "park"
    return None


def _round(coords):
    if isinstance(coords, (int, float)):
        return round(coords, COORD_DECIMALS)
    return [_round(c) for c in coords]


def street_overlay(path: Path) -> dict:
    """The overlay's FeatureCollection (areas first, so roads draw over them)."""
    import osmium

    path = Path(path)
    check_extract(path)
    if path.stat().st_size > MAX_OVERLAY_EXTRACT_BYTES:
        raise RoadNetworkError(
            f"{path}: too large for a GeoJSON street map (limit {MAX_OVERLAY_EXTRACT_BYTES} "
            "bytes); serve a vector PMTiles archive with map_pmtiles instead")
    factory = osmium.geom.GeoJSONFactory()
    areas, lines = [], []
    try:
        for obj in osmium.FileProcessor(str(path)).with_locations().with_areas():
            if isinstance(obj, osmium.osm.Area):
                kind = _area_kind(obj.tags)
                if kind is None:
                    continue
                try:
                    geom = json.loads(factory.create_multipolygon(obj))
                except (RuntimeError, osmium.InvalidLocationError):  # cannot be assembled
                    continue
                areas.append(_feature(geom, kind, obj.tags))
            elif isinstance(obj, osmium.osm.Way):
                highway = obj.tags.get("highway")
                if highway in DRIVABLE_HIGHWAYS:
                    kind = "road"
                elif highway in PATH_HIGHWAYS:
                    kind = "path"
                else:
                    continue
                try:
                    geom = json.loads(factory.create_linestring(obj))
                except (RuntimeError, osmium.InvalidLocationError):  # < 2 located nodes
                    continue
                lines.append(_feature(geom, kind, obj.tags, highway))
    except RuntimeError as e:
        raise RoadNetworkError(f"{path}: not a readable OSM extract: {e}") from e
    order = {"water": 0, "park": 1, "building": 2}
    areas.sort(key=lambda f: order[f["properties"]["kind"]])
    return {"type": "FeatureCollection", "attribution": ATTRIBUTION, "features": areas + lines}


def _feature(geom: dict, kind: str, tags, highway: str | None = None) -> dict:
    props = {"kind": kind}
    if highway:
        props["class"] = highway
    name = tags.get("name")
    if name:
        props["name"] = name
    return {"type": "Feature", "properties": props,
            "geometry": {"type": geom["type"], "coordinates": _round(geom["coordinates"])}}


def cached_street_overlay(path: Path, cache_dir: Path) -> Path:
    """The overlay file of `path` in `cache_dir`, built if missing (atomically)."""
    path = Path(path)
    check_extract(path)
    cache_dir = Path(cache_dir)
    target = cache_dir / f"streets-{file_sha256(path)[:24]}-v{OVERLAY_FORMAT}.geojson"
    if target.is_file():
        return target
    overlay = street_overlay(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".streets-", suffix=".geojson")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(overlay, f, separators=(",", ":"), ensure_ascii=False)
        os.chmod(tmp, 0o644)  # a map anyone may read, like the extract it comes from
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    from .roads import default_cache_dir

    ap = argparse.ArgumentParser(prog="python -m backend.dispatch.streetmap",
                                 description="Build (or find) the cached street overlay.")
    ap.add_argument("extract")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    try:
        print(cached_street_overlay(Path(args.extract),
                                    Path(args.cache_dir) if args.cache_dir
                                    else default_cache_dir()))
    except RoadNetworkError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
