"""Fuel on a day from hil/drives.py with known events: a 15 % drop at night and a 150 L refuel
found at their times and sizes through the level's noise, consumption per trip (L/100 km)
from the fuel rate and, without one, from the level, and nothing on a calm day."""

from __future__ import annotations

import random

import pytest

from backend.driving import fuel
from backend.driving.events import Signals
from hil.drives import SIGNALS, TANK_L, DriveBuilder, calm_trip

DAY = 86_400_000
T0 = 1_790_000_000_000 // DAY * DAY  # midnight


def day() -> DriveBuilder:
    b = DriveBuilder(T0, seed=6, fuel_pct=60.0)
    b.park(2 * 3600, every_s=60)
    b.drain(0.15)  # 60 L gone at 02:00, engine off
    b.park(5 * 3600, every_s=60)
    calm_trip(b, minutes=60)
    b.idle(3600, event=True)
    calm_trip(b, minutes=30)
    b.refuel(150.0)
    b.park(3600, every_s=60)
    return calm_trip(b, minutes=30)


def test_a_night_drop_and_a_refuel_are_found_with_their_times_and_litres():
    d = day().drive
    evs = fuel.level_events(d.signals, TANK_L)
    assert [e["kind"] for e in evs] == ["drop", "refuel"]
    drop, refuel = evs
    (ds, de, dl), = d.truth["drop"]
    assert ds - 10 * 60_000 <= drop["time_ms"] <= de + 10 * 60_000
    assert drop["litres"] == pytest.approx(dl, rel=0.1)
    (rs, re_, rl), = d.truth["refuel"]
    assert rs - 10 * 60_000 <= refuel["time_ms"] <= re_ + 10 * 60_000
    assert refuel["litres"] == pytest.approx(rl, rel=0.1)
    # shuffled, duplicated: the same
    frames = d.signals + d.signals[::7]
    random.Random(2).shuffle(frames)
    assert fuel.level_events(frames, TANK_L) == evs


def test_a_calm_day_has_no_refuel_and_no_drop():
    b = DriveBuilder(T0, seed=11, fuel_pct=70.0)
    b.park(3600, every_s=60)
    for _ in range(3):
        calm_trip(b, minutes=60)
        b.park(1800, every_s=60)
    assert fuel.level_events(b.drive.signals, TANK_L) == []


def test_consumption_per_trip_from_the_rate_and_from_the_level():
    d = day().drive
    trips = fuel.trip_consumption(d.positions, d.signals, TANK_L)
    assert len(trips) == 3 and {t["source"] for t in trips} == {"rate"}
    for t in trips:  # 2.5 + 0.28 × 80 L/h at 80 km/h: ~31 L/100 km, a little more to speed up
        assert 30 <= t["l_per_100km"] <= 36, t
    no_rate = Signals(fuel_rate="NoSuchSignal")
    by_level = fuel.trip_consumption(d.positions, d.signals, TANK_L, no_rate)
    assert {t["source"] for t in by_level} == {"level"}
    long = max(by_level, key=lambda t: t["km"])  # the hour: ~25 L, the level's noise ± a few
    assert long["l_per_100km"] == pytest.approx(31.5, abs=4)
    assert fuel.burnt_l(fuel.rate_series(d.signals, no_rate), T0, T0 + DAY) is None
    # the idling hour burnt 2.5 L by the rate
    (s, e), = d.truth["idle"]
    assert fuel.burnt_l(fuel.rate_series(d.signals), s, e) == pytest.approx(2.5, abs=0.01)
    assert SIGNALS["fuel_level"] == Signals().fuel_level
