"""A vehicle's driving of one UTC day, folded into what can be kept: the events detected in its
readings, its trip starts, the CAN driver changes and its distance per stretch between them;
and its fuel: trips with their consumption, refuels and drops, idling with its fuel.

Pure. Who drove is not folded in: the driver-app logins (store.driver_of) can change after
the day is folded, so `unfold` looks them up at the trip starts each time and splits events
and distance then, exactly as when everything is computed from the readings at once
(km_stretches cuts the distance wherever a driver can change). The report keeps a folded day
while its readings and `signature` are unchanged (report.py, docs/driving.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from . import events, fuel, scorecard
from .thresholds import Thresholds

# Bump when the detectors or this fold change what a day holds: stored days fold again.
FOLD_VERSION = 2
# Positions resuming after this long start a new trip, where the driver may have changed.
TRIP_GAP_MS = 5 * 60_000
# At most this many "who drives" look-ups per vehicle and day (a trip start each); more trips
# than this in a day keep the last driver found.
MAX_APP_LOOKUPS = 200


def signature(th: Thresholds | None, fuel_th: Thresholds, tank_l: float,
              sig: events.Signals) -> str:
    """What a folded day depends on besides its readings: the driving thresholds (None: the
    class is not scored), the idling thresholds of its fuel, its tank, the names."""
    return json.dumps([FOLD_VERSION, th and asdict(th), asdict(fuel_th), tank_l,
                       sig.driving(), sig.fuel_level, TRIP_GAP_MS, MAX_APP_LOOKUPS],
                      sort_keys=True)


def fold_day(positions: list[dict], frames: list[tuple[int, dict]], th: Thresholds,
             sig: events.Signals, start_ms: int, end_ms: int, truncated: bool = False) -> dict:
    """The day [start, end) from its readings (read with a margin either side, so an event
    spanning midnight is whole; it belongs to the day it began in). JSON-able."""
    clean = events.clean_positions(positions)
    starts = scorecard.trip_starts(clean, TRIP_GAP_MS)[:MAX_APP_LOOKUPS]
    can = events.driver_at(frames, sig)
    found = [e for e in events.harsh(positions, frames, th, sig)
             + events.idling(positions, frames, th, sig) if start_ms <= e["start_ms"] < end_ms]
    inside = [p for p in clean if start_ms <= p["time_ms"] < end_ms]
    cuts = sorted(set(starts) | {t for t, _ in can})
    return {"events": found, "starts": starts, "can": [list(c) for c in can],
            "km": [list(s) for s in scorecard.km_stretches(inside, cuts)],
            "truncated": truncated}


def fold_fuel(positions: list[dict], frames: list[tuple[int, dict]], tank_l: float,
              th: Thresholds, sig: events.Signals, start_ms: int, end_ms: int) -> dict:
    """The day's fuel (fuel.py): trips starting in [start, end) with their consumption,
    refuels and drops with the position at the time, idling events with their fuel."""
    clean = events.clean_positions(positions)
    times = [p["time_ms"] for p in clean]
    steps = []
    for e in fuel.level_events(frames, tank_l, sig):
        if start_ms <= e["time_ms"] < end_ms:
            at = events.position_at(clean, times, e["time_ms"])
            steps.append({**e, "lat": at.get("lat"), "lon": at.get("lon")})
    return {"trips": [t for t in fuel.trip_consumption(positions, frames, tank_l, sig)
                      if start_ms <= t["start_ms"] < end_ms],
            "events": steps,
            "idle": [e for e in events.idling(positions, frames, th, sig)
                     if start_ms <= e["start_ms"] < end_ms]}


def unfold(day: dict, app: list[tuple[int, str | None]]) -> tuple[list[dict], dict[str, float]]:
    """(events with their driver, km per driver) of a folded day, given the driver-app
    logins at its trip starts (`app`: (time, driver or None))."""
    changes = scorecard.combine(app, [(t, d) for t, d in day["can"]])
    return (scorecard.attribute(day["events"], changes),
            scorecard.km_of_drivers([(c, k) for c, k in day["km"]], changes))
