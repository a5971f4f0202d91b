"""A vehicle's driving of one UTC day, folded into what can be kept: the events detected in its
readings, its trip starts, the CAN driver changes and its distance per stretch between them.

Pure. Who drove is not folded in: the driver-app logins (store.driver_of) can change after
the day is folded, so `unfold` looks them up at the trip starts each time and splits events
and distance then, exactly as when everything is computed from the readings at once
(km_stretches cuts the distance wherever a driver can change). The report keeps a folded day
while its readings and `signature` are unchanged (report.py, docs/driving.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from . import events, scorecard
from .thresholds import Thresholds

# Bump when the detectors or this fold change what a day holds: stored days fold again.
FOLD_VERSION = 1
# Positions resuming after this long start a new trip, where the driver may have changed.
TRIP_GAP_MS = 5 * 60_000
# At most this many "who drives" look-ups per vehicle and day (a trip start each); more trips
# than this in a day keep the last driver found.
MAX_APP_LOOKUPS = 200


def signature(th: Thresholds, sig: events.Signals) -> str:
    """What a folded day depends on besides its readings."""
    return json.dumps([FOLD_VERSION, asdict(th), sig.driving(), TRIP_GAP_MS, MAX_APP_LOOKUPS],
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


def unfold(day: dict, app: list[tuple[int, str | None]]) -> tuple[list[dict], dict[str, float]]:
    """(events with their driver, km per driver) of a folded day, given the driver-app
    logins at its trip starts (`app`: (time, driver or None))."""
    changes = scorecard.combine(app, [(t, d) for t, d in day["can"]])
    return (scorecard.attribute(day["events"], changes),
            scorecard.km_of_drivers([(c, k) for c, k in day["km"]], changes))
