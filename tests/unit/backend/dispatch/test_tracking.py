"""The arrival detector (geostream/arrivals.py) and the backfill-invariant track around it
(backend/dispatch/tracking.py): positions delivered late, shuffled and twice give the
arrivals and departures of in-order delivery."""

import ast
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.dispatch.jobstate import Visit
from backend.dispatch.tracking import VehicleTrack, first_visits
from geostream.arrivals import ArrivalDetector, Zone, detect, distance_m

LAT, LON = 60.1699, 24.9384
STOP = Zone("s1", LAT, LON, 50.0)
OTHER = Zone("s2", LAT + 0.01, LON, 50.0)
M_PER_DEG_LAT = 111_195.0


def north(m: float) -> tuple[float, float]:
    return LAT + m / M_PER_DEG_LAT, LON


def test_distance_matches_a_degree_of_latitude():
    assert abs(distance_m(0, 0, 1, 0) - M_PER_DEG_LAT) < 1.0


def test_arrival_after_dwell_starts_at_the_first_reading_inside():
    pts = [(0, *north(500)), (10_000, *north(20)), (40_000, *north(10)),
           (69_999, *north(0)), (70_000, *north(5))]
    events = detect([STOP], pts, dwell_s=60)
    assert [(e.kind, e.at_ms, e.decided_ms) for e in events] == [("arrival", 10_000, 70_000)]


def test_a_short_pass_is_no_arrival_and_edge_noise_no_departure():
    passing = [(0, *north(500)), (10_000, *north(10)), (30_000, *north(10)),
               (40_000, *north(500)), (200_000, *north(500))]
    assert detect([STOP], passing, dwell_s=60) == []
    # arrived, then wandering between 40 and 70 m (< 1.5 × 50 m)
    parked = [(t * 10_000, *north(0 if t < 4 else 40 if t % 2 else 70)) for t in range(40)]
    events = detect([STOP], parked, dwell_s=30)
    assert [e.kind for e in events] == ["arrival"]


def test_departure_after_dwell_outside_the_wider_circle():
    pts = [(0, *north(0)), (60_000, *north(0)), (70_000, *north(70)), (80_000, *north(200)),
           (140_000, *north(300))]
    events = detect([STOP], pts, dwell_s=60)
    # 70 m is beyond 50 m but within 75 m (1.5 ×): the departure starts at 200 m
    assert [(e.kind, e.at_ms) for e in events] == [("arrival", 0), ("departure", 80_000)]


def test_state_snapshot_continues_exactly():
    pts = [(t * 5_000, *north(abs(300 - t * 5))) for t in range(120)]
    whole = detect([STOP, OTHER], pts)
    d = ArrivalDetector([STOP, OTHER])
    for p in pts[:57]:
        d.feed(*p)
    rest = detect([STOP, OTHER], pts[57:], state=d.state())
    assert d.events() + rest == whole
    assert [e.kind for e in whole] == ["arrival", "departure"]


def test_out_of_order_feed_is_refused():
    d = ArrivalDetector([STOP])
    d.feed(10, LAT, LON)
    try:
        d.feed(5, LAT, LON)
    except ValueError:
        pass
    else:
        raise AssertionError("an older position was accepted")


def test_detector_imports_nothing_from_backend():
    tree = ast.parse(Path(__file__).resolve().parents[4].joinpath(
        "geostream/arrivals.py").read_text())
    names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert names and not [n for n in names if n.startswith(("backend", "."))]


def test_first_visits_takes_the_first_arrival_and_the_departure_after_it():
    pts = [(0, *north(0)), (70_000, *north(0)), (80_000, *north(400)), (150_000, *north(400)),
           (160_000, *north(0)), (230_000, *north(0))]
    events = detect([STOP], pts, dwell_s=60)
    assert [e.kind for e in events] == ["arrival", "departure", "arrival"]
    v = first_visits(events)["s1"]
    assert v.arrived[0] == 0 and v.departed[0] == 80_000


# --- backfill invariance --------------------------------------------------------------------

@st.composite
def drive(draw):
    """(t, seq, lat, lon): a vehicle moving between the two stops and elsewhere, with repeats
    of a millisecond and gaps."""
    out, t = [], 1_000
    spots = [north(0), north(30), north(70), north(300), (OTHER.lat, OTHER.lon)]
    for seq in range(draw(st.integers(1, 80))):
        t += draw(st.sampled_from([0, 5_000, 10_000, 20_000, 45_000]))
        out.append((t, seq, *draw(st.sampled_from(spots))))
    return out


def _delivered(batches, every_ms: int) -> tuple[list, dict[str, Visit]]:
    """Deliver batches as the backend does: committed to a store (a list here), then the
    track continues live or rewinds and re-reads the stored positions after a checkpoint."""
    stored: dict[int, tuple] = {}
    track = VehicleTrack("r", [STOP, OTHER], since_ms=1_000, dwell_s=30,
                         checkpoint_every_ms=every_ms)
    for batch in filter(None, batches):
        for p in batch:
            stored[p[1]] = p  # keyed by seq: a re-delivered reading is stored once
        rows = sorted(batch)
        t0 = rows[0][0]
        if track.is_live(t0):
            track.fold((t, lat, lon) for t, _, lat, lon in rows)
        else:
            after = track.rewind(t0)
            track.fold((t, lat, lon) for t, _, lat, lon in sorted(stored.values())
                       if t > after)
    return track.events(), track.visits()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pts=drive(), data=st.data())
def test_shuffled_late_and_repeated_batches_give_the_in_order_events(pts, data):
    in_order = detect([STOP, OTHER], [(t, a, b) for t, _, a, b in sorted(pts)], dwell_s=30)
    shuffled = data.draw(st.permutations(pts))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(pts) - 1)), max_size=10)))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(pts)], strict=True)]
    again = data.draw(st.integers(0, len(batches) - 1))
    batches.insert(data.draw(st.integers(again, len(batches))), batches[again])
    every = data.draw(st.sampled_from([10_000, 60_000, 120_000]))
    events, visits = _delivered(batches, every)
    assert events == in_order
    assert visits == first_visits(in_order)
