"""Speeds learned from the fleet's history on central Helsinki's roads (backend/dispatch/
speeds.py): a van driven at a known speed teaches its segments that speed for that hour of
the week; travel times with them follow it, say so in their basis, and are kept by graph hash;
the history is read from the store (both dialects)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from backend.dispatch.matrix import RoadMatrix
from backend.dispatch.model import Point
from backend.dispatch.roads import haversine_m
from backend.dispatch.speeds import (
    MIN_SAMPLES,
    LearnedSpeeds,
    LearnedTravel,
    SpeedLearner,
    hour_of_week,
    speeds_path,
)
from backend.dispatch.speeds_cli import learn_from_store
from backend.store.base import StoredReading
from geostream.clock import wall_ms
from hil import demo_dispatch
from tests.integration.dispatch import helsinki

MONDAY_8 = int(dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC).timestamp() * 1000)
SPEED_MPS = 5.0  # 18 km/h: slower than any road class's speed


@pytest.fixture(scope="module")
def rm():
    return RoadMatrix(helsinki.graph())


def drive(graph, a: Point, b: Point, t0_ms: int, mps: float = SPEED_MPS):
    """1 Hz fixes along the graph's path from a to b at `mps` (an independent player: linear
    interpolation between the path's waypoints); and the path's length."""
    points, _ = demo_dispatch.road_path(graph, [a, b])
    lat = np.array([p[0] for p in points])
    lon = np.array([p[1] for p in points])
    step = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
    along = np.concatenate([[0.0], np.cumsum(step)])
    at = np.arange(0.0, along[-1], mps)
    track = [(t0_ms + i * 1000, float(np.interp(d, along, lat)), float(np.interp(d, along, lon)))
             for i, d in enumerate(at)]
    return track, float(along[-1])


def test_hour_of_week_is_utc_from_monday():
    assert hour_of_week(MONDAY_8) == 8
    assert hour_of_week(MONDAY_8 + 6 * 86_400_000 + 15 * 3_600_000) == 167  # Sunday 23:00
    assert hour_of_week(MONDAY_8 + 7 * 86_400_000) == 8


def test_a_drive_teaches_its_speed_for_its_hour(rm, tmp_path):
    g = rm.graph
    a, b = demo_dispatch.depot_point(g), Point(float(g.lat[500]), float(g.lon[500]))
    track, length_m = drive(g, a, b, MONDAY_8 + 10 * 60_000)
    learner = SpeedLearner(rm)
    for _ in range(MIN_SAMPLES):  # three days' drives, the same hour
        learner.add_track(track)
    speeds = learner.speeds
    assert learner.matched > 0.9 * learner.pairs  # nearly every fix pair on a segment
    seconds, learned = speeds.seconds(g.seg_s, g.seg_m, 8)
    seen = sorted({s for s, h in speeds.count if h == 8 and speeds.count[(s, h)] >= MIN_SAMPLES
                   and g.seg_m[s] > 30})
    assert learned >= len(seen) > 5
    speed = g.seg_m[seen] / seconds[seen]
    assert np.median(speed) == pytest.approx(SPEED_MPS, rel=0.1)
    untouched = np.setdiff1d(np.arange(g.segment_count), [s for s, _ in speeds.count])
    assert np.array_equal(seconds[untouched], g.seg_s[untouched])  # road classes elsewhere
    # another hour of the week: the week's observations serve it (none of its own)
    other, _ = speeds.seconds(g.seg_s, g.seg_m, 100)
    assert np.allclose(other[seen], seconds[seen])

    # travel times with them follow the fleet's speed, and say so
    travel = LearnedTravel(rm, speeds)
    ends = [(a.lon, a.lat), (track[-1][2], track[-1][1])]
    learned_s = travel.at(MONDAY_8).matrix(ends).seconds[0, 1]
    static_s = rm.matrix(ends).seconds[0, 1]
    assert learned_s == pytest.approx(length_m / SPEED_MPS, rel=0.2)
    assert static_s < 0.8 * learned_s
    basis = travel.at(MONDAY_8).matrix(ends).basis
    assert "speeds learned from the fleet's history" in basis and "hour 8 of the week" in basis
    assert travel.matrix(ends).basis == rm.basis  # planning keeps the class speeds

    # kept by graph hash: read back the same, refused for another graph or a damaged file
    path = speeds_path(tmp_path, g.sha256)
    speeds.save(path)
    back = LearnedSpeeds.load(path, g.sha256)
    assert back.count == speeds.count and back.seconds_sum == pytest.approx(speeds.seconds_sum)
    assert back.metres_sum == pytest.approx(speeds.metres_sum)
    assert LearnedSpeeds.load(path, "0" * 64) is None
    path.write_bytes(b"not numpy")
    assert LearnedSpeeds.load(path, g.sha256) is None


async def test_history_is_read_from_the_store(any_store, rm):
    g = rm.graph
    t0 = (wall_ms() // 3_600_000 - 2) * 3_600_000  # inside PostgreSQL's partition window
    track, _ = drive(g, demo_dispatch.depot_point(g),
                     Point(float(g.lat[900]), float(g.lon[900])), t0)
    rows = [StoredReading("van.1", 1, i, t, "pos", lat=lat, lon=lon, received_ms=t)
            for i, (t, lat, lon) in enumerate(track)]
    await any_store.write(rows, [])
    learner = await learn_from_store(any_store, rm, t0 - 86_400_000, t0 + 86_400_000)
    direct = SpeedLearner(rm)
    direct.add_track(track)
    assert learner.pairs == len(track) - 1 and learner.matched > 0
    assert learner.speeds.count == direct.speeds.count
