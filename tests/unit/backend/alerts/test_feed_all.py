"""`Evaluator.feed_all` (the bulk loop an evaluation runs) gives the same state and episodes as
`feed` of each reading in turn, for any readings, rules, geofences and prior state."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.alerts.evaluate import Evaluator, Fence, reading_order
from backend.alerts.rules import GeofenceRule, OverspeedRule, RuleSet, SignalRule
from backend.store.base import StoredReading

V = "truck-1"


def _box(lat0: float, lat1: float):
    return lambda lat, lon: lat0 <= lat <= lat1


FENCES = [Fence("depot", _box(53.54, 53.56)), Fence("town", _box(53.50, 53.60), 50.0),
          Fence("yard", _box(53.55, 53.57), 30.0)]
NUMBERS = [None, True, "fast", 0, 29.0, 49.9, 50.0, 51, 89.0, 90.0, 95.0, 130.0, 2**70,
           math.nan, math.inf, -math.inf, -5.0]


@st.composite
def readings(draw):
    out = []
    t = 0
    for seq in range(1, draw(st.integers(0, 70)) + 1):
        t += draw(st.sampled_from([0, 500, 1000, 1000, 2000, 7000]))
        kind = draw(st.sampled_from(["pos", "pos", "pos", "can", "evt", "act"]))
        if kind == "pos":
            lat = draw(st.sampled_from([53.45, 53.55, 53.565, 53.58, None]))
            out.append(StoredReading(V, 1, seq, t, "pos", lat=lat,
                                     lon=draw(st.sampled_from([9.99, None])) if lat else 9.99,
                                     speed_kmh=draw(st.sampled_from(NUMBERS)), received_ms=1))
        elif kind == "can":
            data = {name: draw(st.sampled_from(NUMBERS))
                    for name in draw(st.lists(st.sampled_from(["Coolant", "Fuel", "Other"]),
                                              unique=True))}
            out.append(StoredReading(V, 1, seq, t, "can", data=data or None, received_ms=1))
        elif kind == "evt":
            codes = draw(st.lists(st.sampled_from(["P0301", "P0420"]), max_size=2, unique=True))
            data = draw(st.sampled_from([
                {"name": "dtc", "proto": "obd2", "src": 1, "dtcs": [{"code": c} for c in codes]},
                {"name": "journal-dropped", "counts": {"pos": 3}}, {"name": "other"}]))
            out.append(StoredReading(V, 1, seq, t, "evt", data=data, received_ms=1))
        else:
            out.append(StoredReading(V, 1, seq, t, "act", data={"key": "k"}, received_ms=1))
    return out


rule_sets = st.builds(
    RuleSet,
    overspeed=st.sampled_from([None, OverspeedRule(90.0, 3.0, 2.0), OverspeedRule(0.0, 0, 0)]),
    signals=st.sampled_from([(), (SignalRule("hot", "Coolant", 90.0, True, 2.0, 1.0),
                                  SignalRule("low", "Fuel", 50.0, False, 0.0, 3.0))]),
    geofence=st.sampled_from([None, GeofenceRule(3.0), GeofenceRule(0.0, enter=False)]),
    journal=st.booleans(), dtc=st.booleans())
fence_sets = st.sampled_from([[], FENCES[:1], FENCES, FENCES[1:]])


def _shape(ev: Evaluator):
    return ev.state(), ev.episodes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rs=readings(), rules=rule_sets, before=fence_sets, after=fence_sets, data=st.data())
def test_feed_all_is_feed_of_each_reading(rs, rules, before, after, data):
    rs.sort(key=reading_order)
    cut = data.draw(st.integers(0, len(rs)))
    # a prior state from the first readings, maybe under another set of geofences (some
    # deleted or added since), as a checkpoint or the cached state hands it over
    prior = Evaluator(V, rules, before)
    for r in rs[:cut]:
        prior.feed(r)
    state = prior.state()
    one_by_one = Evaluator(V, rules, after, state)
    for r in rs[cut:]:
        one_by_one.feed(r)
    bulk = Evaluator(V, rules, after, state)
    rest = rs[cut:]
    cuts = sorted(data.draw(st.sets(st.integers(0, len(rest)), max_size=4)))
    for a, b in zip([0, *cuts], [*cuts, len(rest)], strict=True):
        bulk.feed_all(rest[a:b])
    assert repr(_shape(bulk)) == repr(_shape(one_by_one))  # repr: NaN peaks compare equal


def _containers(v, out: list) -> list:
    if isinstance(v, dict | list):
        out.append(v)
        for x in v.values() if isinstance(v, dict) else v:
            _containers(x, out)
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True, database=None)
@given(rs=readings(), rules=rule_sets, fences=fence_sets)
def test_a_states_copy_is_a_deep_copy(rs, rules, fences):
    """`state()` (a checkpoint's copy, not `copy.deepcopy`) equals the state and shares no
    dict or list with it: feeding on changes no checkpoint taken before."""
    import copy

    rs.sort(key=reading_order)
    ev = Evaluator(V, rules, fences)
    ev.feed_all(rs)
    live = ev.take_state()
    taken = ev.state()
    assert repr(taken) == repr(copy.deepcopy(live))
    assert not {id(c) for c in _containers(taken, [])} & {id(c) for c in _containers(live, [])}
