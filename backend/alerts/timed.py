"""The clock-driven rules (stale, offline): which alerts open or close at `now`, from each
vehicle's newest reading and connection times (docs/alerts.md). Pure: the engine stores and
publishes what these return."""

from __future__ import annotations

from collections.abc import Iterable

from ..store.base import StoredAlert
from .evaluate import Episode

_NO_POSITION = (0, None, None, None)


def closed(a: StoredAlert, end_ms: int, decided_ms: int) -> Episode:
    """The open alert `a` as an episode that ended at `end_ms`."""
    return Episode(a.rule, a.vehicle_id, a.start_ms, end_ms, a.subject, a.peak, a.lat, a.lon,
                   a.detail, decided_ms)


def stale_changes(stale, now_ms: int, seen: dict[str, int], positions: dict[str, tuple],
                  timed: dict[tuple[str, str], StoredAlert]) -> list[Episode]:
    """Stale: no reading for `after_s` while not parked; closed by a newer reading.
    `seen`: newest device time per vehicle; `positions`: (time, speed, lat, lon) per vehicle;
    `timed`: the open clock-driven alerts by (rule, vehicle)."""
    changes: list[Episode] = []
    if stale is None:
        return changes
    for vehicle, last in sorted(seen.items()):
        open_ = timed.get(("stale", vehicle))
        if open_ is not None:
            if last > open_.detail.get("last_reading_ms", last):
                changes.append(closed(open_, max(open_.start_ms, last), last))
            continue
        _, speed, lat, lon = positions.get(vehicle, _NO_POSITION)
        parked = speed is not None and speed < stale.parked_kmh
        if not parked and now_ms - last >= stale.after_s * 1000:
            start = last + round(stale.after_s * 1000)
            changes.append(Episode("stale", vehicle, start, None, "", None, lat, lon,
                                   {"last_reading_ms": last}, start))
    return changes


def offline_changes(offline, now_ms: int, vehicles: Iterable[str], connected: set[str],
                    connected_ms: dict[str, int], started_ms: int, positions: dict[str, tuple],
                    timed: dict[tuple[str, str], StoredAlert]) -> list[Episode]:
    """Offline: not connected for `after_s` (counted from start-up for a vehicle never seen
    connected); closed when it connects. Updates `connected_ms` for the connected vehicles."""
    changes: list[Episode] = []
    if offline is None:
        return changes
    for vehicle in vehicles:
        open_ = timed.get(("offline", vehicle))
        if vehicle in connected:
            connected_ms[vehicle] = now_ms
            if open_ is not None:
                changes.append(closed(open_, now_ms, now_ms))
            continue
        since = connected_ms.get(vehicle, started_ms)
        if open_ is None and now_ms - since >= offline.after_s * 1000:
            start = since + round(offline.after_s * 1000)
            _, _, lat, lon = positions.get(vehicle, _NO_POSITION)
            changes.append(Episode("offline", vehicle, start, None, "", None, lat, lon,
                                   {"last_connected_ms": connected_ms.get(vehicle)}, start))
    return changes
