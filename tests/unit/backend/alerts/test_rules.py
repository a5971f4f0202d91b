"""The sans-IO evaluator against hand-written expectations, one rule at a time."""

import pytest
import shapely.geometry

from backend.alerts.evaluate import Evaluator, Fence
from backend.alerts.fences import fences_from_rows
from backend.alerts.rules import RuleSet, parse_rules
from tests.integration.alerts.helpers import V, can, evt, pos

DEPOT = {"type": "Polygon", "coordinates": [[[9.98, 53.54], [10.0, 53.54], [10.0, 53.56],
                                              [9.98, 53.56], [9.98, 53.54]]]}


def run(readings, rules=None, fences=(), state=None):
    ev = Evaluator(V, rules or RuleSet(), fences, state)
    for r in readings:
        ev.feed(r)
    return ev


def spans(ev):
    return [(e.rule, e.subject, e.start_ms, e.end_ms) for e in ev.episodes()]


def test_overspeed_needs_duration_and_closes_after_staying_below():
    speeds = [80, 95, 99, 97, 96, 92, 93, 85, 94, 80, 70, 60, 60]  # one sample per 2 s
    ev = run([pos(i + 1, 2 * i, s) for i, s in enumerate(speeds)])
    # above from t=2 s; 10 s later still above (t=12 s) → open; below at 14 s, above again at
    # 16 s (within clear 5 s), below from 18 s, 5 s later (t=22 s ≥ 18+5) → closed at 18 s
    [e] = ev.episodes()
    assert (e.rule, e.start_ms, e.end_ms, e.peak) == ("overspeed", 2000, 18000, 99)
    assert e.detail == {"limit_kmh": 90.0, "geofence": None}


def test_overspeed_too_short_is_no_alert():
    ev = run([pos(1, 0, 100), pos(2, 5, 100), pos(3, 9, 100), pos(4, 11, 50), pos(5, 30, 50)])
    assert ev.episodes() == []


def test_overspeed_open_episode_is_reported_open():
    ev = run([pos(i + 1, i, 120) for i in range(12)])
    assert spans(ev) == [("overspeed", "", 0, None)]


def test_geofence_speed_limit_overrides_the_rule_limit_inside_it():
    depot = fences_from_rows([{"geofence_id": "depot", "area": DEPOT, "speed_limit_kmh": 20}])
    inside = [pos(i + 1, i * 2, 30, 53.55, 9.99) for i in range(8)]  # 30 km/h in a 20 zone
    ev = run(inside, fences=depot, rules=parse_rules({"geofence": {"enabled": False}}))
    [e] = ev.episodes()
    assert (e.rule, e.start_ms, e.end_ms, e.detail["limit_kmh"], e.detail["geofence"]) == (
        "overspeed", 0, None, 20.0, "depot")
    outside = [pos(i + 1, i * 2, 30, 53.60, 9.99) for i in range(8)]
    assert run(outside, fences=depot).episodes() == []


def test_signal_rules_above_and_below():
    rules = parse_rules({"signal": [
        {"name": "coolant-high", "signal": "EngCoolantTemp", "above": 105, "duration_s": 3},
        {"name": "fuel-low", "signal": "FuelLevel1", "below": 10, "duration_s": 4}]})
    readings = [can(i + 1, i, EngCoolantTemp=c, FuelLevel1=f) for i, (c, f) in enumerate(
        [(90, 12), (106, 9), (110, 8), (108, 7), (107, 6), (104, 5), (100, 5), (99, 5),
         (98, 5), (97, 5), (96, 5), (95, 5)])]
    eps = {e.rule: e for e in run(readings, rules).episodes()}
    assert (eps["coolant-high"].start_ms, eps["coolant-high"].end_ms,
            eps["coolant-high"].peak) == (1000, 5000, 110)
    assert (eps["fuel-low"].start_ms, eps["fuel-low"].end_ms, eps["fuel-low"].peak) == (
        1000, None, 5)


def test_geofence_enter_exit_with_dwell_and_no_flapping():
    fence = Fence("depot", lambda lat, lon: shapely.geometry.shape(DEPOT).contains(
        shapely.geometry.Point(lon, lat)))
    rules = parse_rules({"geofence": {"dwell_s": 5}, "overspeed": {"enabled": False}})
    lats = ([53.58] * 3  # outside
            + [53.55, 53.58, 53.55, 53.58]  # noise along the edge: never 5 s on one side
            + [53.55] * 8  # inside from t=7 for good
            + [53.58] * 8)  # outside from t=15
    ev = run([pos(i + 1, i * 1, 10, lat) for i, lat in enumerate(lats)], rules, [fence])
    assert spans(ev) == [("geofence-enter", "depot", 7000, 7000),
                         ("geofence-exit", "depot", 15000, 15000)]


def test_journal_events_and_dtcs_keyed_by_code():
    readings = [
        evt(1, 1, "journal-dropped", reason="full", counts={"pos": 40, "can": 2}, ts=[0, 9]),
        evt(2, 2, "dtc", source="dm1", active=[{"spn": 110, "fmi": 0}, {"code": "P0301"}]),
        evt(3, 3, "dtc", source="dm1", active=[{"spn": 110, "fmi": 0}, {"code": "P0301"}]),
        evt(4, 4, "dtc", source="dm1", active=[{"code": "P0301"}]),
        evt(5, 5, "journal-recreated", moved_aside="j.corrupt"),
    ]
    eps = sorted(spans(run(readings)))
    assert eps == [("dtc", "P0301", 2000, None), ("dtc", "SPN110-FMI0", 2000, 4000),
                   ("journal-dropped", "7/1", 1000, 1000),
                   ("journal-recreated", "7/5", 5000, 5000)]
    dropped = [e for e in run(readings).episodes() if e.rule == "journal-dropped"][0]
    assert dropped.peak == 42


def test_state_snapshot_continues_exactly():
    readings = [pos(i + 1, i, 100 if 3 <= i < 30 else 50) for i in range(40)]
    whole = run(readings).episodes()
    first = run(readings[:15])
    rest = run(readings[15:], state=first.state())
    assert [e for e in first.episodes() if e.end_ms is not None] + rest.episodes() == whole


@pytest.mark.parametrize("bad", [
    {"nope": {}}, {"overspeed": {"limit": 3}}, {"overspeed": {"limit_kmh": -1}},
    {"signal": [{"name": "x", "signal": "Y"}]},
    {"signal": [{"name": "x", "signal": "Y", "above": 1, "below": 2}]},
    {"stale": {"after_s": "soon"}}, {"dtc": {"enabled": True, "x": 1}},
])
def test_bad_rule_tables_are_refused(bad):
    with pytest.raises(ValueError):
        parse_rules(bad)


def test_defaults_and_describe():
    rules = parse_rules({})
    assert (rules.overspeed.limit_kmh, rules.overspeed.min_duration_s) == (90.0, 10.0)
    assert (rules.stale.after_s, rules.offline.after_s) == (300.0, 600.0)
    names = [r["name"] for r in rules.describe()]
    assert names[:4] == ["overspeed", "coolant-high", "engine-oil-high", "fuel-low"]
    assert {"geofence-enter", "geofence-exit", "stale", "offline", "dtc"} <= set(names)
    assert parse_rules({"overspeed": {"enabled": False}}).overspeed is None


def test_dtc_events_as_the_agent_sends_them_per_controller_and_set():
    """docs/protocol.md §4: `dtcs` is the complete set of one (proto, src, set)."""
    def dm1(seq, t, src, *spns):
        return evt(seq, t, "dtc", bus="truck", proto="j1939", src=src, set="active",
                   dtcs=[{"spn": s, "fmi": 3, "oc": 1} for s in spns],
                   lamps={"mil": 1, "rsl": 0, "awl": 0, "pl": 0})

    readings = [dm1(1, 1, 0, 110), dm1(2, 2, 3, 520),  # engine ECU and transmission
                evt(3, 3, "dtc", bus="truck", proto="obd2", src=0x7E8, set="stored",
                    dtcs=[{"code": "P0301"}]),
                dm1(4, 4, 0),  # the engine's code cleared: the transmission's stays
                evt(5, 5, "dtc", bus="truck", proto="obd2", src=0x7E8, set="pending",
                    dtcs=[])]  # another set of that ECU: its stored code stays
    ev = run(readings)
    assert sorted(spans(ev)) == [("dtc", "P0301", 3000, None), ("dtc", "SPN110-FMI3", 1000, 4000),
                                 ("dtc", "SPN520-FMI3", 2000, None)]
    engine = [e for e in ev.episodes() if e.subject == "SPN110-FMI3"][0]
    assert engine.detail == {"code": "SPN110-FMI3", "spn": 110, "fmi": 3, "oc": 1,
                             "proto": "j1939", "src": 0, "set": "active", "bus": "truck",
                             "lamps": {"mil": 1, "rsl": 0, "awl": 0, "pl": 0}}
    assert engine.peak == 1
