"""Per-stop ETAs: road legs, waits, service, lateness, basis (the legs checked on the graph
against single-pair matrices, the arithmetic by hand)."""

from __future__ import annotations

import pytest

from backend.dispatch.eta import MIN_SPREAD_S, route_eta
from backend.dispatch.matrix import StraightLineMatrix
from backend.dispatch.model import Job, Place, Point, TimeWindow
from tests.integration.dispatch import helsinki

T0 = 1_790_000_000_000


def _node(k: int) -> Point:
    g = helsinki.graph()
    return Point(float(g.lat[k]), float(g.lon[k]))


def test_etas_add_road_legs_waits_and_service():
    rm = helsinki.road_matrix()
    here, a, b = _node(10), _node(400), _node(900)
    jobs = [Job("a", Place(a), service_s=300,
                windows=(TimeWindow(T0 + 3_600_000, T0 + 7_200_000),)),
            Job("b", Place(b), service_s=60)]
    eta = route_eta(here.lat, here.lon, T0, jobs, rm)
    leg1 = rm.matrix([(here.lon, here.lat), (a.lon, a.lat)]).seconds[0, 1]
    leg2 = rm.matrix([(a.lon, a.lat), (b.lon, b.lat)]).seconds[0, 1]
    sa, sb = eta.stops
    assert sa.arrival_ms == T0 + round(leg1 * 1000)
    assert sa.begin_ms == T0 + 3_600_000  # early: waits for the window
    assert sa.wait_s == (sa.begin_ms - sa.arrival_ms) // 1000
    assert sa.departure_ms == sa.begin_ms + 300_000
    assert sb.arrival_ms == sa.departure_ms + round(leg2 * 1000)
    assert sb.departure_ms == sb.arrival_ms + 60_000 and not sb.late
    assert sb.spread_s >= sa.spread_s >= MIN_SPREAD_S
    assert "road network" in eta.basis


def test_a_stop_whose_window_has_closed_is_late_and_busy_vehicles_start_later():
    here = _node(10)
    jobs = [Job("x", Place(_node(600)), windows=(TimeWindow(T0 - 10_000, T0 + 1_000),))]
    eta = route_eta(here.lat, here.lon, T0, jobs, StraightLineMatrix(),
                    busy_until_ms=T0 + 600_000)
    (x,) = eta.stops
    assert x.late and eta.late == ("x",)
    assert x.arrival_ms > T0 + 600_000
    assert "straight line" in eta.basis


def test_no_stops_no_etas():
    assert route_eta(60.17, 24.94, T0, [], StraightLineMatrix()).stops == ()


@pytest.mark.parametrize("lat,lon", [(60.10, 24.95)])
def test_a_vehicle_off_the_map_is_an_error(lat, lon):
    from backend.dispatch.matrix import SnapError

    with pytest.raises(SnapError):
        route_eta(lat, lon, T0, [Job("a", Place(_node(5)))], helsinki.road_matrix())


def test_a_leg_from_a_kept_tree_is_the_matrix_leg():
    """`RoadMatrix.leg` (a reverse tree to the stop, kept) answers what a two-point matrix
    (forward Dijkstra from the origin) answers: from road nodes, from points along and beside
    segments, from the stop's own segment, on one-ways, through the LRU of trees."""
    import numpy as np

    from backend.dispatch import matrix as matrix_module

    g = helsinki.graph()
    rm = matrix_module.RoadMatrix(g)  # its own: the shared one may hold others' trees
    rng = np.random.default_rng(7)
    targets = [(float(g.lon[k]), float(g.lat[k])) for k in rng.choice(g.node_count, 6)]
    seg = rng.choice(g.segment_count, 40)
    f = rng.random(40)
    origins = [(float(g.lon[g.seg_a[s]] * (1 - x) + g.lon[g.seg_b[s]] * x) + 1e-5 * (i % 3),
                float(g.lat[g.seg_a[s]] * (1 - x) + g.lat[g.seg_b[s]] * x))
               for i, (s, x) in enumerate(zip(seg, f, strict=True))]
    # the stop's own segment, ahead and behind it
    s0 = int(seg[0])
    targets.append((float((g.lon[g.seg_a[s0]] + g.lon[g.seg_b[s0]]) / 2),
                    float((g.lat[g.seg_a[s0]] + g.lat[g.seg_b[s0]]) / 2)))
    origins += [(float(g.lon[g.seg_a[s0]]), float(g.lat[g.seg_a[s0]])),
                (float(g.lon[g.seg_b[s0]]), float(g.lat[g.seg_b[s0]]))]
    checked = 0
    for target in targets:
        for origin in origins:
            want = rm.matrix([origin, target]).seconds[0, 1]
            assert rm.leg(origin, target) == pytest.approx(want, rel=1e-9, abs=1e-6)
            checked += 1
    assert checked == 7 * 42 and len(rm._trees) == 7  # one tree per stop, kept
    old = matrix_module.TREE_CACHE_BYTES
    matrix_module.TREE_CACHE_BYTES = 3 * 8 * g.node_count  # room for three trees
    try:
        fresh = matrix_module.RoadMatrix(g)
        for target in targets:
            fresh.leg(origins[0], target)
        assert list(fresh._trees) == [(t[0], t[1]) for t in targets[-3:]]  # the newest kept
    finally:
        matrix_module.TREE_CACHE_BYTES = old
