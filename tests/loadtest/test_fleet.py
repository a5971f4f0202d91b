"""The simulated vehicle's bookkeeping (sans-IO): readings, live-first batches, credit, acks."""

import random

import cbor2
import pytest

from geostream.codec import reading_problem
from loadtest.fleet import CAN_EVERY, MAX_BATCH_READINGS, Histogram, SimVehicle


def vehicle(rate=10.0):
    return SimVehicle("v", "tok", epoch=5, rate_hz=rate, start=100.0,
                      wall_ms_at_start=1_790_000_000_000, seed=3)


def test_readings_are_numbered_timed_and_valid():
    v = vehicle(rate=4.0)
    assert v.make_due(100.0) == 1            # the first one at the start
    assert v.make_due(102.0) == 8            # 4 Hz: 1 + 8 by t = 2 s
    readings = list(v.unacked.values())
    assert [r["q"] for r in readings] == list(range(1, 10))
    assert [r["ts"] for r in readings] == [1_790_000_000_000 + 250 * i for i in range(9)]
    assert all(reading_problem(r) is None for r in readings)
    kinds = [r["k"] for r in readings]
    assert kinds.count("can") == 9 // CAN_EVERY and set(kinds) == {"pos", "can"}
    pos = next(r for r in readings if r["k"] == "pos")
    can = next(r for r in readings if r["k"] == "can")
    assert 90 < len(cbor2.dumps(pos)) < 140 and 150 < len(cbor2.dumps(can)) < 260


def test_live_first_then_oldest_backlog_within_credit():
    v = vehicle()
    v.make_due(100.0)
    assert [r["q"] for r in v.next_batch(10, 100.0)] == [1]
    v.make_due(100.45)                       # 2..5 made, nothing acked: a new session
    v.new_session()
    v.make_due(100.75)                       # 6..8 made after reconnecting: live
    batch = v.next_batch(5, 101.0)
    assert [r["q"] for r in batch] == [8, 7, 6, 1, 2]
    assert [r["q"] for r in v.next_batch(100, 101.0)] == [3, 4, 5]
    assert v.next_batch(100, 101.0) == [] and not v.has_unsent


def test_batches_stay_within_the_bound_and_every_reading_goes_once():
    v = vehicle(rate=1000.0)
    v.make_due(102.0)
    sent = []
    while v.has_unsent:
        batch = v.next_batch(4096, 102.0)
        assert 0 < len(batch) <= MAX_BATCH_READINGS
        sent += [r["q"] for r in batch]
    assert sorted(sent) == list(range(1, 2002)) and len(set(sent)) == len(sent)


def test_acks_count_once_and_record_latency():
    v = vehicle()
    v.make_due(100.25)                       # q 1..3
    v.next_batch(10, 100.25)
    assert v.acknowledged([1, 2], 100.375) == 2
    assert v.acknowledged([2, 3, 99], 100.50) == 1   # 2 again, 99 never made
    assert v.acked == 3 and not v.unacked
    assert v.latency.total == 3
    assert v.latency.percentile(50) == 126.0 and v.latency.percentile(100) == 251.0


def test_histogram_percentiles_match_a_sorted_list():
    rng = random.Random(4)
    samples = [rng.expovariate(20) for _ in range(5000)]
    h = Histogram()
    for s in samples:
        h.add(s)
    merged = Histogram.from_json(h.to_json())
    merged.merge(Histogram())
    ordered = sorted(int(s * 1000) + 1 for s in samples)
    for p in (50, 95, 99):
        assert merged.percentile(p) == ordered[-(-len(ordered) * p // 100) - 1]
    assert Histogram().percentile(99) is None


def test_ack_gap_is_the_longest_stretch_without_acks():
    from loadtest.report import ack_gap_s

    assert ack_gap_s({0, 1, 2, 5, 6}, 8, 0.1) == pytest.approx(0.2)
    assert ack_gap_s(set(range(10)), 10, 0.1) == 0
    assert ack_gap_s({3}, 5, 0.1) == pytest.approx(0.3)  # from the window's start
    assert ack_gap_s(set(), 5, 0.1) == pytest.approx(0.5)
