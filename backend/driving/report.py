"""The edge of driver behaviour: read a window's readings from the store a day at a time, run
the pure detectors (events.py), attribute drivers and distance, and build scorecards.

Computed from what is stored whenever asked, never kept: readings that arrive late change the
answer exactly as if they had arrived on time (backfill-invariant by construction).
"""

from __future__ import annotations

from ..dispatch.model import VehicleClass
from ..store.rows import AlertQuery
from . import events, fuel, scorecard
from .thresholds import DrivingConfig

# A day's positions and CAN frames are read at most this many rows each: a day at 1 Hz is
# 86 400, at 4 Hz 345 600; past it the day is cut (and says so in `truncated`).
MAX_ROWS_PER_DAY = 400_000
# Each day is read with this much before and after, so an idling hour or a brake that spans
# midnight is found whole; it belongs to the day it began in.
MARGIN_MS = 2 * 3_600_000
# One question reads at most this many vehicle-days (each up to MAX_ROWS_PER_DAY rows of
# positions and of frames): a month of a 100-vehicle fleet. More is refused: ask per vehicle
# or for a shorter window.
MAX_VEHICLE_DAYS = 3_100
MAX_OVERSPEED = 10_000  # overspeed alerts per vehicle and window
# Positions resuming after this long start a new trip, where the driver may have changed.
TRIP_GAP_MS = 5 * 60_000
# At most this many "who drives" look-ups per vehicle and day (a trip start each); more trips
# than this in a day keep the last driver found.
MAX_APP_LOOKUPS = 200


def check_size(vehicles: list[str], start_ms: int, end_ms: int) -> None:
    """ValueError when the question would read more than MAX_VEHICLE_DAYS."""
    days = len(scorecard.split_days(start_ms, end_ms))
    if len(vehicles) * days > MAX_VEHICLE_DAYS:
        raise ValueError(f"{len(vehicles)} vehicles × {days} days is more than "
                         f"{MAX_VEHICLE_DAYS} vehicle-days: ask for one vehicle or a shorter "
                         "window")


async def _drivers(store, vehicle: str, pos: list[dict], can: list[tuple[int, str]]
                   ) -> list[tuple[int, str]]:
    """Who drove when: the driver-app login of the vehicle's shift (store.driver_of) at each
    trip start, else the CAN driver identification."""
    starts = scorecard.trip_starts(pos, TRIP_GAP_MS)[:MAX_APP_LOOKUPS]
    app = [(t, await store.driver_of(vehicle, t)) for t in starts]
    return scorecard.combine(app, can)


async def vehicle_classes(store) -> dict[str, VehicleClass]:
    """Vehicle id → its dispatch type's class (backend/dispatch/model.py)."""
    types = {t.id: t.vehicle_class for t in await store.catalogue("vehicle_types")}
    return {v.vehicle_id: types[v.type_id] for v in await store.dispatch_vehicles()
            if v.type_id in types}


async def vehicle_window(store, cfg: DrivingConfig, vehicle: str, vclass: VehicleClass | None,
                         start_ms: int, end_ms: int,
                         sig: events.Signals = events.DEFAULT_SIGNALS) -> dict:
    """{"events": [...], "km": [(week, vehicle, driver, km)], "truncated": bool} of one
    vehicle in [start, end): harsh and idling events (per the class's thresholds), overspeed
    episodes from the alert rule, each with its driver (the CAN driver identification)."""
    th = cfg.for_class(vclass)
    out: dict = {"events": [], "km": [], "truncated": False}
    if th is None:
        return out
    for a, b in scorecard.split_days(start_ms, end_ms):
        pos = await store.route(vehicle, a - MARGIN_MS, b + MARGIN_MS,
                                limit=MAX_ROWS_PER_DAY)
        frames = await store.signal_frames(vehicle, sig.driving(), a - MARGIN_MS,
                                           b + MARGIN_MS, MAX_ROWS_PER_DAY)
        out["truncated"] |= len(pos) >= MAX_ROWS_PER_DAY or len(frames) >= MAX_ROWS_PER_DAY
        changes = await _drivers(store, vehicle, events.clean_positions(pos),
                                 events.driver_at(frames, sig))
        found = [e for e in events.harsh(pos, frames, th, sig) + events.idling(pos, frames, th,
                                                                               sig)
                 if a <= e["start_ms"] < b]
        out["events"] += scorecard.attribute(found, changes)
        inside = [p for p in events.clean_positions(pos) if a <= p["time_ms"] < b]
        for driver, km in scorecard.km_by_driver(inside, changes).items():
            out["km"].append((scorecard.week_start(a), vehicle, driver, km))
    over = await store.list_alerts(AlertQuery(vehicle=vehicle, rule="overspeed",
                                              from_ms=start_ms, to_ms=end_ms,
                                              limit=MAX_OVERSPEED))
    if over:
        frames = await store.signal_frames(vehicle, [sig.driver], start_ms - MARGIN_MS, end_ms,
                                           MAX_ROWS_PER_DAY)
        changes = events.driver_at(frames, sig)
        changes = scorecard.combine([(a.start_ms, await store.driver_of(vehicle, a.start_ms))
                                     for a in over[:MAX_APP_LOOKUPS]], changes)
        out["events"] += scorecard.attribute([
            {"kind": "overspeed", "start_ms": a.start_ms, "end_ms": a.end_ms,
             "peak": a.peak, "unit": "km/h", "threshold": None, "source": "alert",
             "lat": a.lat, "lon": a.lon, "speed_kmh": a.peak}
            for a in over if start_ms <= a.start_ms < end_ms], changes)
    for e in out["events"]:
        e["vehicle"] = vehicle
    out["events"].sort(key=lambda e: (e["start_ms"], e["kind"]))
    return out


async def fleet_window(store, cfg: DrivingConfig, vehicles: list[str], start_ms: int,
                       end_ms: int) -> dict:
    """vehicle_window over several vehicles: all events (time order), all distances."""
    check_size(vehicles, start_ms, end_ms)
    classes = await vehicle_classes(store)
    evs, km, truncated = [], [], False
    for v in vehicles:
        got = await vehicle_window(store, cfg, v, classes.get(v), start_ms, end_ms)
        evs += got["events"]
        km += got["km"]
        truncated |= got["truncated"]
    evs.sort(key=lambda e: (e["start_ms"], e["vehicle"], e["kind"]))
    return {"events": evs, "km": km, "truncated": truncated}


async def fuel_window(store, cfg: DrivingConfig, vehicles: list[str], start_ms: int,
                      end_ms: int, sig: events.Signals = events.DEFAULT_SIGNALS) -> dict:
    """{"trips": [...], "events": [...], "idle": [...], "truncated"}: per vehicle and day,
    trip consumption, refuels and drops (with the position at the time) and idling events
    (their fuel), each starting within [start, end)."""
    check_size(vehicles, start_ms, end_ms)
    classes = await vehicle_classes(store)
    out: dict = {"trips": [], "events": [], "idle": [], "truncated": False}
    names = [*sig.driving(), sig.fuel_level]
    for v in vehicles:
        tank = cfg.tank_of(v)
        th = cfg.for_class(classes.get(v)) or cfg.for_class(None)
        for a, b in scorecard.split_days(start_ms, end_ms):
            pos = await store.route(v, a - MARGIN_MS, b + MARGIN_MS, limit=MAX_ROWS_PER_DAY)
            frames = await store.signal_frames(v, names, a - MARGIN_MS, b + MARGIN_MS,
                                               MAX_ROWS_PER_DAY)
            out["truncated"] |= (len(pos) >= MAX_ROWS_PER_DAY
                                 or len(frames) >= MAX_ROWS_PER_DAY)
            clean = events.clean_positions(pos)
            times = [p["time_ms"] for p in clean]
            for t in fuel.trip_consumption(pos, frames, tank, sig):
                if a <= t["start_ms"] < b:
                    out["trips"].append({"vehicle": v, **t})
            for e in fuel.level_events(frames, tank, sig):
                if a <= e["time_ms"] < b:
                    at = events.position_at(clean, times, e["time_ms"])
                    out["events"].append({"vehicle": v, **e, "lat": at.get("lat"),
                                          "lon": at.get("lon")})
            if th is not None:
                out["idle"] += [{"vehicle": v, **e} for e in events.idling(pos, frames, th, sig)
                                if a <= e["start_ms"] < b]
    return out
