"""The simulated vehicle's bookkeeping (sans-IO): readings, batches in the agent's drain order,
acks and their latencies."""

import random

import cbor2

from agent.journal_drain import DrainState
from geostream.codec import reading_problem
from loadtest.fleet import CAN_EVERY, Histogram, SimVehicle


def vehicle(rate=10.0):
    return SimVehicle("v", "tok", epoch=5, rate_hz=rate, start=100.0,
                      wall_ms_at_start=1_790_000_000_000, seed=3)


def test_readings_are_numbered_timed_and_valid():
    v = vehicle(rate=4.0)
    assert v.make_due(99.0) == 0             # nothing before the start
    assert v.make_due(100.0) == 1            # the first one at the start
    assert v.make_due(102.0) == 8            # 4 Hz: 1 + 8 by t = 2 s
    readings = v.pending_wire()
    assert [r["q"] for r in readings] == list(range(1, 10))
    assert [r["ts"] for r in readings] == [1_790_000_000_000 + 250 * i for i in range(9)]
    assert all(reading_problem(r) is None for r in readings)
    kinds = [r["k"] for r in readings]
    assert kinds.count("can") == 9 // CAN_EVERY and set(kinds) == {"pos", "can"}
    pos = next(r for r in readings if r["k"] == "pos")
    can = next(r for r in readings if r["k"] == "can")
    assert 90 < len(cbor2.dumps(pos)) < 140 and 150 < len(cbor2.dumps(can)) < 260


def test_batches_are_live_first_then_the_oldest_backlog():
    v = vehicle()
    v.make_due(100.45)                       # q 1..5; 5 is a position, 4 a CAN snapshot
    drain = DrainState(0)
    assert v.next_batch(drain, 3, 65536, 100.5).seqs == (5, 1, 2)
    assert drain.more
    assert v.next_batch(drain, 10, 65536, 100.5).seqs == (3, 4)
    assert not drain.more and not v.next_batch(drain, 10, 65536, 100.5)


def test_acks_count_once_and_record_latency():
    v = vehicle()
    v.make_due(100.25)                       # q 1..3
    drain = DrainState(0)
    v.next_batch(drain, 10, 65536, 100.25)   # caught up: a live batch
    assert v.acknowledge(2, [], 100.375) == 2
    assert v.acknowledge(2, [(3, 3), (99, 99)], 100.50) == 1   # 1-2 again, 99 never made
    assert v.acked == 3 and v.unacked == []
    assert v.latency.total == 3 and v.live_latency.total == 3
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
