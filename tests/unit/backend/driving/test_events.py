"""Driving events on drives from hil/drives.py with known events: harsh brake, acceleration and
cornering found at their times with the class's thresholds, an idling hour found with its
fuel, nothing on a calm drive; the same readings shuffled and duplicated give the same events;
CAN accelerations replace GPS-derived ones; the CAN driver id says who drove; scorecards."""

from __future__ import annotations

import random

import pytest

from backend.dispatch.model import VehicleClass
from backend.driving import events, scorecard
from backend.driving.thresholds import DEFAULTS, parse_driving
from hil.drives import DriveBuilder, calm_trip

T0 = 1_790_000_000_000
TRUCK = DEFAULTS[VehicleClass.TRUCK]
CAR = DEFAULTS[VehicleClass.CAR]


def eventful(**kw) -> DriveBuilder:
    """One trip with a harsh brake, a harsh corner, a harsh start (for a truck, not for a car)
    and an idling hour, the rest calm."""
    b = DriveBuilder(T0, seed=4, **kw).start_engine()
    b.idle(60)  # warming up: too short to count
    b.change_speed(40, 80).cruise(120)
    b.change_speed(3, 20, harsh="brake")  # 5.6 m/s²
    b.cruise(60).change_speed(30, 50).cruise(30)
    b.cruise(6, turn_dps=18, harsh_turn=True)  # 50 km/h at 18°/s: 4.4 m/s² lateral
    b.cruise(60).change_speed(30, 0).cruise(20)
    b.change_speed(4, 40, harsh="accel")  # 2.8 m/s²: harsh for a truck only
    b.cruise(60).change_speed(30, 0)
    b.idle(3600, event=True)
    return calm_trip(b, minutes=10)


def _found(evs, kind):
    return [(e["start_ms"], e["end_ms"]) for e in evs if e["kind"] == kind]


def _matches(found, truth):
    """Each true event found once, starting within a second of it."""
    assert len(found) == len(truth), (found, truth)
    for (s, _), (ts, te) in zip(found, truth, strict=True):
        assert ts - 1000 <= s <= te, (s, ts, te)


def test_harsh_events_and_the_idling_hour_are_found_at_their_times():
    b = eventful()
    d = b.drive
    got = events.harsh(d.positions, [], TRUCK)
    for kind in ("harsh_brake", "harsh_corner", "harsh_accel"):
        _matches(_found(got, kind), d.truth[kind])
    assert len(got) == 3 and all(e["source"] == "gps" for e in got)
    brake = next(e for e in got if e["kind"] == "harsh_brake")
    assert brake["peak"] == pytest.approx(60 / 3.6 / 3, abs=0.6) and brake["lat"] is not None
    # a car may start that hard: its class's threshold is higher
    assert _found(events.harsh(d.positions, [], CAR), "harsh_accel") == []
    [idle] = events.idling(d.positions, d.signals, TRUCK)
    (ts, te) = d.truth["idle"][0]
    assert ts - 1000 <= idle["start_ms"] <= ts + 1000 and te - 1000 <= idle["end_ms"] <= te
    assert idle["peak"] == pytest.approx(60, abs=0.1)  # minutes
    assert idle["fuel_l"] == pytest.approx(2.5, abs=0.01)  # 2.5 L/h for an hour


def test_a_calm_drive_has_no_events():
    b = calm_trip(DriveBuilder(T0, seed=9), minutes=40)
    b.idle(120)  # a short stop at a light or a gate: not idling
    calm_trip(b, minutes=10)
    assert events.harsh(b.drive.positions, b.drive.signals, TRUCK) == []
    assert events.idling(b.drive.positions, b.drive.signals, TRUCK) == []


def test_late_shuffled_and_duplicated_readings_give_the_same_events():
    d = eventful().drive
    want = (events.harsh(d.positions, d.signals, TRUCK),
            events.idling(d.positions, d.signals, TRUCK))
    rng = random.Random(1)
    pos = d.positions + rng.sample(d.positions, 500)  # retransmitted
    frames = d.signals + rng.sample(d.signals, 500)
    rng.shuffle(pos)
    rng.shuffle(frames)
    assert (events.harsh(pos, frames, TRUCK), events.idling(pos, frames, TRUCK)) == want


def test_can_accelerations_replace_the_gps_ones_when_a_dbc_provides_them():
    d = eventful(can_acc=True).drive
    got = events.harsh(d.positions, d.signals, TRUCK)
    assert {e["source"] for e in got} == {"can"}
    for kind in ("harsh_brake", "harsh_corner", "harsh_accel"):
        _matches(_found(got, kind), d.truth[kind])


def test_the_can_driver_id_says_who_drove_and_scorecards_compare_per_100_km():
    b = DriveBuilder(T0, seed=2, driver="D-17")
    calm_trip(b, minutes=30)
    b.driver = "D-42"
    b.start_engine().change_speed(30, 80).cruise(900)
    for _ in range(3):
        b.change_speed(3, 20, harsh="brake").change_speed(30, 80).cruise(60)
    d = b.drive
    changes = events.driver_at(d.signals)
    assert [c[1] for c in changes] == ["D-17", "D-42"]
    evs = [{**e, "vehicle": "truck-1"} for e in scorecard.attribute(
        events.harsh(d.positions, d.signals, TRUCK), changes)]
    assert [(e["kind"], e["driver"]) for e in evs] == [("harsh_brake", "D-42")] * 3
    km = scorecard.km_by_driver(events.clean_positions(d.positions), changes)
    odo = d.series("odometer")
    switch = changes[1][0]
    truth17 = [v for t, v in odo if t < switch][-1] - odo[0][1]
    assert km["D-17"] == pytest.approx(truth17, rel=0.03)
    week = scorecard.week_start(T0)
    rows = scorecard.scorecards(evs, [(week, "truck-1", dr, k) for dr, k in km.items()],
                                by="driver")
    by = {r["driver"]: r for r in rows}
    assert by["D-17"]["score"] == 100.0 and by["D-17"]["harsh_brake"] == 0
    assert by["D-42"]["harsh_brake"] == 3
    assert by["D-42"]["score"] == pytest.approx(
        100 - 5.0 * 3 * 100 / by["D-42"]["km"], abs=0.1)
    assert rows[0]["driver"] == "D-17"  # best first
    [veh] = scorecard.scorecards(evs, [(week, "truck-1", dr, k) for dr, k in km.items()],
                                 by="vehicle")
    assert veh["vehicle"] == "truck-1" and veh["harsh_brake"] == 3


def test_thresholds_per_class_from_config():
    cfg = parse_driving({"truck": {"brake_ms2": 2.5}, "bike": {"accel_ms2": 2,
                                                               "brake_ms2": 3,
                                                               "corner_ms2": 3}})
    assert cfg.for_class(VehicleClass.TRUCK).brake_ms2 == 2.5
    assert cfg.for_class(VehicleClass.TRUCK).accel_ms2 == TRUCK.accel_ms2
    assert cfg.for_class(VehicleClass.WALK) is None
    assert cfg.for_class(None) == DEFAULTS[VehicleClass.VAN]
    tanks = parse_driving({"tank_l": 300, "tanks": {"truck-1": 600}})
    assert (tanks.tank_of("truck-1"), tanks.tank_of("van-2")) == (600.0, 300.0)
    for bad in ({"plane": {}}, {"truck": {"brake_ms2": -1}}, {"truck": {"x": 1}},
                {"truck": {"brake_ms2": True}}, {"tank_l": 0}, {"tanks": {"a": 1e9}},
                {"tanks": 5}):
        with pytest.raises(ValueError):
            parse_driving(bad)


def test_the_driver_app_login_wins_over_the_can_id_where_there_is_one():
    can = [(0, "C-1"), (500, "C-2")]
    app = [(0, None), (300, "A-9"), (700, None)]  # trips: nobody logged in, A-9, nobody
    changes = scorecard.combine(app, can)
    assert [events.who(changes, t) for t in (100, 400, 600, 800)] == [
        "C-1", "A-9", "A-9", "C-2"]


def test_a_question_too_large_is_refused():
    from backend.driving import report

    day = 86_400_000
    report.check_size(["a"] * 100, 0, 31 * day)  # a month of 100 vehicles: fine
    with pytest.raises(ValueError, match="vehicle-days"):
        report.check_size(["a"] * 101, 0, 31 * day)
