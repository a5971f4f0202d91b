"""Maintenance rules over synthetic histories, with the clock passed in (no store)."""

from __future__ import annotations

import random

import pytest

from backend.maintenance import dtc, health, intervals
from backend.maintenance.config import HealthCheck, Interval, parse_maintenance

NOW = 1_800_000_000_000
DAY = 86_400_000


def test_gps_odometry_sums_the_path_and_skips_jumps():
    # 0.01° of latitude is 1.1119 km on the mean Earth sphere: 10 steps north, one per minute
    points = [{"time_ms": i * 60_000, "lat": 53.0 + 0.01 * i, "lon": 10.0} for i in range(11)]
    assert intervals.gps_km(points) == pytest.approx(11.119, rel=1e-3)
    # a 50 km jump in one second (a bad fix) is not distance driven, the way back neither
    jump = [*points[:5], {"time_ms": points[4]["time_ms"] + 1000, "lat": 53.5, "lon": 10.0},
            *points[5:]]
    assert intervals.gps_km(jump) == pytest.approx(11.119, rel=1e-3)


def test_counter_reset_counts_from_zero():
    assert intervals.counter_delta(1000.0, 1095.5) == 95.5
    assert intervals.counter_delta(1000.0, 12.0) == 12.0
    assert intervals.counter_delta(None, 5.0) is None


@pytest.mark.parametrize(("used", "state", "remaining"),
                         [(50, "ok", 50), (90, "due", 10), (100, "due", 0),
                          (101, "overdue", -1), (None, "unknown", None)])
def test_distance_interval_states(used, state, remaining):
    iv = Interval("oil", "km", 100, due_within=10)
    s = intervals.status("t", iv, used, 0, NOW, "gps")
    assert (s.state, s.remaining) == (state, remaining)


def test_calendar_interval_uses_the_clock():
    iv = Interval("inspection", "days", 365, due_within=30)
    since = NOW - 300 * DAY
    assert intervals.status("t", iv, None, since, NOW, "none").state == "ok"
    assert intervals.status("t", iv, None, since, NOW + 40 * DAY, "none").state == "due"
    late = intervals.status("t", iv, None, since, NOW + 70 * DAY, "none")
    assert (late.state, late.remaining, late.source) == ("overdue", -5, "calendar")


def test_config_refuses_nonsense():
    with pytest.raises(ValueError, match="by must be"):
        parse_maintenance({"interval": [{"name": "x", "by": "miles", "every": 1}]})
    with pytest.raises(ValueError, match="unknown keys"):
        parse_maintenance({"intervall": []})
    with pytest.raises(ValueError, match="unique"):
        parse_maintenance({"interval": [{"name": "a", "by": "km", "every": 1}] * 2})
    cfg = parse_maintenance({"interval": [{"name": "a", "by": "km", "every": 5}],
                             "health": [{"signal": "EngCoolantTemp"}], "recent_hours": 6})
    assert (cfg.intervals[0].every, cfg.health[0].signal, cfg.recent_hours) == (
        5, "EngCoolantTemp", 6)


def _dm1(t, *codes, src=0):
    return (t, {"bus": "truck", "proto": "j1939", "src": src, "set": "active",
                "dtcs": [{"spn": s, "fmi": f, "oc": oc} for s, f, oc in codes]})


def test_trouble_codes_open_close_and_count():
    events = [_dm1(1000, (110, 0, 1)), _dm1(2000, (110, 0, 2), (100, 1, 1)),
              _dm1(3000, (100, 1, 1)), _dm1(4000), _dm1(5000, (110, 0, 3)),
              _dm1(2500, (520, 3, 1), src=3)]  # another controller, arrives out of order
    rows = dtc.fold(events)
    got = [(r["code"], r["state"], r["first_ms"], r["last_ms"], r["count"], r["closed_ms"])
           for r in rows]
    assert got == [("SPN520-FMI3", "open", 2500, 2500, 1, None),
                   ("SPN110-FMI0", "open", 5000, 5000, 1, None),
                   ("SPN110-FMI0", "closed", 1000, 2000, 2, 3000),
                   ("SPN100-FMI1", "closed", 2000, 3000, 2, 4000)]
    assert rows[1]["occurrences"] == 3


def _series(rng, n, start, step, mean, sd):
    return [(start + i * step, rng.gauss(mean, sd)) for i in range(n)]


def test_own_baseline_drift_per_load_band():
    rng = random.Random(7)
    check = HealthCheck("EngCoolantTemp", band_signal="EngLoad", band_width=20, max_z=3.5)
    recent_from = NOW - DAY
    base = _series(rng, 200, NOW - 10 * DAY, 60_000, 88.0, 0.8)
    hot = _series(rng, 100, recent_from, 60_000, 94.0, 0.8)  # 6 °C hotter at the same load
    load = [(t, 50.0) for t, _ in base + hot]  # always in the 40..60 % band
    rows = health.condition(base + hot, load, check)
    [f] = health.own_drift("truck-1", check, rows, recent_from)
    assert f["band"] == "EngLoad 40..60" and f["drifted"]
    assert f["baseline"]["median"] == pytest.approx(88.0, abs=0.3)
    assert f["recent"]["median"] == pytest.approx(94.0, abs=0.3)
    assert f["z"] > 4  # (94 - 88) / (1.4826 × MAD ≈ 0.8)
    steady = health.condition(base + _series(rng, 100, recent_from, 60_000, 88.2, 0.8), load,
                              check)
    assert not health.own_drift("truck-1", check, steady, recent_from)[0]["drifted"]


def test_condition_needs_a_fresh_reading_and_rest():
    check = HealthCheck("BatteryVoltage", rest_signal="EngSpeed", rest_below=1)
    samples = [(0, 12.6), (10_000, 12.5), (200_000, 12.4)]
    rpm = [(0, 0.0), (9_000, 800.0)]
    # at 0: engine off; at 10 s: running; at 200 s: the rpm reading is too old to say
    assert health.condition(samples, rpm, check) == [(0, 12.6, "EngSpeed < 1")]


def test_fleet_drift_flags_the_odd_vehicle():
    rng = random.Random(3)
    check = HealthCheck("BatteryVoltage", min_samples=10)
    recent = {f"truck-{i}": {"all": [rng.gauss(12.6 + 0.05 * i, 0.05) for _ in range(30)]}
              for i in range(5)}
    recent["truck-9"] = {"all": [rng.gauss(11.9, 0.05) for _ in range(30)]}
    found = {f["vehicle"]: f for f in health.fleet_drift(check, recent)}
    assert found["truck-9"]["drifted"] and found["truck-9"]["z"] < -3.5
    assert not any(found[f"truck-{i}"]["drifted"] for i in range(5))
    assert found["truck-9"]["fleet"]["vehicles"] == 5
    # two vehicles are no fleet
    assert health.fleet_drift(check, {k: recent[k] for k in ("truck-0", "truck-9")}) == []


def _obd(t, set_, *codes):
    return (t, {"bus": "obd", "proto": "obd2", "src": 0x7E8, "set": set_,
                "dtcs": [{"code": c} for c in codes]})


def test_trouble_code_workflow_active_pending_cleared_and_recurrence():
    events = [
        _dm1(1000, (110, 0, 1)), _dm1(2000), _dm1(9000, (110, 0, 2)),  # cleared, recurred
        _dm1(3000, (100, 1, 1), src=3), _dm1(4000, src=3),  # cleared for good
        # OBD: P0301 pending, then confirmed (stored) while still pending: one episode
        _obd(1500, "pending", "P0301"), _obd(2500, "stored", "P0301"),
        _obd(3500, "pending"), _obd(5000, "pending", "P0420"),  # P0420 only pending
    ]
    rows = {r["code"]: r for r in dtc.workflow(dtc.fold(events), km=400.0)}
    spn110 = rows["SPN110-FMI0"]
    assert (spn110["status"], spn110["first_ms"], spn110["last_ms"], spn110["episodes"],
            spn110["recurrences"], spn110["recurred_ms"], spn110["cleared_ms"]) == (
        "active", 1000, 9000, 2, 1, 9000, None)
    assert spn110["per_1000_km"] == 5.0 and spn110["occurrences"] == 2
    spn100 = rows["SPN100-FMI1"]
    assert (spn100["status"], spn100["cleared_ms"], spn100["recurrences"]) == (
        "cleared", 4000, 0)
    p0301 = rows["P0301"]
    assert (p0301["status"], p0301["episodes"], p0301["first_ms"]) == ("active", 1, 1500)
    assert rows["P0420"]["status"] == "pending"
    order = [r["code"] for r in dtc.workflow(dtc.fold(events), km=None)]
    assert order == ["SPN110-FMI0", "P0301", "P0420", "SPN100-FMI1"]
    # too little distance says nothing about frequency; a hostile count is dropped
    assert rows["P0420"]["per_1000_km"] == 2.5
    few = dtc.workflow(dtc.fold([_dm1(1, (1, 2, "many"))]), km=3.0)
    assert few[0]["per_1000_km"] is None and few[0]["occurrences"] is None


def test_shared_codes_name_the_other_vehicles():
    per = {v: dtc.workflow(dtc.fold(evs), None) for v, evs in {
        "a": [_dm1(1, (110, 0, 1))], "b": [_dm1(2, (110, 0, 1), (5, 5, 1))],
        "c": [_dm1(3, (5, 5, 1))]}.items()}
    dtc.shared_codes(per)
    assert per["a"][0]["other_vehicles"] == ["b"]
    assert {r["code"]: r["other_vehicles"] for r in per["b"]} == {
        "SPN110-FMI0": ["a"], "SPN5-FMI5": ["c"]}
