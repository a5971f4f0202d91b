"""The edge of driver behaviour: read a vehicle's readings a day at a time, run the pure
detectors (events.py) folded per day (fold.py), attribute drivers and distance, and build
scorecards.

A whole UTC day's fold is kept in the store (`driving_days`) with a fingerprint of the
readings of its window and the thresholds it was folded with; a question reads the kept day
while both are unchanged and folds it again from the readings otherwise. So readings that
arrive late change the answer exactly as if they had arrived on time (backfill-invariant),
and a weekly scorecard reads a few rows per vehicle-day instead of its readings. Partial days
(today, a window's ragged ends) are folded from the readings each time.
"""

from __future__ import annotations

import json

from geostream.clock import wall_ms

from ..dispatch.model import VehicleClass
from ..store.rows import AlertQuery
from . import events, fold, scorecard
from .thresholds import DrivingConfig, Thresholds

DAY_MS = 86_400_000
# A day's positions and CAN frames are read at most this many rows each: a day at 1 Hz is
# 86 400, at 4 Hz 345 600; past it the day is cut (and says so in `truncated`).
MAX_ROWS_PER_DAY = 400_000
# Each day is read with this much before and after, so an idling hour or a brake that spans
# midnight is found whole; it belongs to the day it began in.
MARGIN_MS = 2 * 3_600_000
# One question reads at most this many vehicle-days (each up to MAX_ROWS_PER_DAY rows of
# positions and of frames when it is not kept): a month of a 100-vehicle fleet. More is
# refused: ask per vehicle or for a shorter window.
MAX_VEHICLE_DAYS = 3_100
MAX_OVERSPEED = 10_000  # overspeed alerts per vehicle and window


def check_size(vehicles: list[str], start_ms: int, end_ms: int) -> None:
    """ValueError when the question would read more than MAX_VEHICLE_DAYS."""
    days = len(scorecard.split_days(start_ms, end_ms))
    if len(vehicles) * days > MAX_VEHICLE_DAYS:
        raise ValueError(f"{len(vehicles)} vehicles × {days} days is more than "
                         f"{MAX_VEHICLE_DAYS} vehicle-days: ask for one vehicle or a shorter "
                         "window")


async def vehicle_classes(store) -> dict[str, VehicleClass]:
    """Vehicle id → its dispatch type's class (backend/dispatch/model.py)."""
    types = {t.id: t.vehicle_class for t in await store.catalogue("vehicle_types")}
    return {v.vehicle_id: types[v.type_id] for v in await store.dispatch_vehicles()
            if v.type_id in types}


def day_params(cfg: DrivingConfig, vclass: VehicleClass | None, vehicle: str
               ) -> tuple[Thresholds | None, Thresholds, float]:
    """(driving thresholds, None: not scored; the thresholds its idling fuel is found with;
    its tank) of a vehicle."""
    th = cfg.for_class(vclass)
    fuel_th = th or cfg.for_class(None)
    assert fuel_th is not None  # untyped vehicles are scored by parse_driving's defaults
    return th, fuel_th, cfg.tank_of(vehicle)


async def folded_day(store, vehicle: str, params: tuple[Thresholds | None, Thresholds, float],
                     start_ms: int, end_ms: int, sig: events.Signals = events.DEFAULT_SIGNALS,
                     keep: bool = True) -> dict:
    """{"driving": fold.fold_day or None (not scored), "fuel": fold.fold_fuel, "truncated"}
    of the vehicle's [start, end): the kept fold of a whole UTC day while its readings and
    signature are unchanged, else folded from the readings (and kept, when `keep` and the day
    is whole)."""
    th, fuel_th, tank = params
    whole = keep and end_ms - start_ms == DAY_MS and start_ms % DAY_MS == 0
    if whole:
        key = fold.signature(th, fuel_th, tank, sig)
        fingerprint = await store.readings_fingerprint(vehicle, start_ms - MARGIN_MS,
                                                       end_ms + MARGIN_MS)
        kept = await store.driving_day(vehicle, start_ms)
        if kept is not None and kept[0] == key and kept[1] == fingerprint:
            return json.loads(kept[2])
    pos = await store.route(vehicle, start_ms - MARGIN_MS, end_ms + MARGIN_MS,
                            limit=MAX_ROWS_PER_DAY)
    frames = await store.signal_frames(vehicle, [*sig.driving(), sig.fuel_level],
                                       start_ms - MARGIN_MS, end_ms + MARGIN_MS,
                                       MAX_ROWS_PER_DAY)
    day = {"driving": None if th is None else fold.fold_day(pos, frames, th, sig, start_ms,
                                                            end_ms),
           "fuel": fold.fold_fuel(pos, frames, tank, fuel_th, sig, start_ms, end_ms),
           "truncated": len(pos) >= MAX_ROWS_PER_DAY or len(frames) >= MAX_ROWS_PER_DAY}
    if whole:  # the fingerprint was taken first: a reading arriving meanwhile folds again
        await store.put_driving_day(vehicle, start_ms, key, fingerprint, json.dumps(day),
                                    wall_ms())
    return day


async def vehicle_window(store, cfg: DrivingConfig, vehicle: str, vclass: VehicleClass | None,
                         start_ms: int, end_ms: int,
                         sig: events.Signals = events.DEFAULT_SIGNALS, keep: bool = True
                         ) -> dict:
    """{"events": [...], "km": [(week, vehicle, driver, km)], "truncated": bool} of one
    vehicle in [start, end): harsh and idling events (per the class's thresholds), overspeed
    episodes from the alert rule, each with its driver: the driver-app login of the vehicle's
    shift (store.driver_of) at each trip start, else the CAN driver identification."""
    params = day_params(cfg, vclass, vehicle)
    out: dict = {"events": [], "km": [], "truncated": False}
    if params[0] is None:
        return out
    for a, b in scorecard.split_days(start_ms, end_ms):
        got = await folded_day(store, vehicle, params, a, b, sig, keep)
        day = got["driving"]
        app = [(t, await store.driver_of(vehicle, t)) for t in day["starts"]]
        found, km = fold.unfold(day, app)
        out["truncated"] |= got["truncated"]
        out["events"] += found
        for driver, d in km.items():
            out["km"].append((scorecard.week_start(a), vehicle, driver, d))
    over = await store.list_alerts(AlertQuery(vehicle=vehicle, rule="overspeed",
                                              from_ms=start_ms, to_ms=end_ms,
                                              limit=MAX_OVERSPEED))
    if over:
        frames = await store.signal_frames(vehicle, [sig.driver], start_ms - MARGIN_MS, end_ms,
                                           MAX_ROWS_PER_DAY)
        changes = events.driver_at(frames, sig)
        changes = scorecard.combine([(a.start_ms, await store.driver_of(vehicle, a.start_ms))
                                     for a in over[:fold.MAX_APP_LOOKUPS]], changes)
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
                       end_ms: int, keep: bool = True) -> dict:
    """vehicle_window over several vehicles: all events (time order), all distances."""
    check_size(vehicles, start_ms, end_ms)
    classes = await vehicle_classes(store)
    evs, km, truncated = [], [], False
    for v in vehicles:
        got = await vehicle_window(store, cfg, v, classes.get(v), start_ms, end_ms, keep=keep)
        evs += got["events"]
        km += got["km"]
        truncated |= got["truncated"]
    evs.sort(key=lambda e: (e["start_ms"], e["vehicle"], e["kind"]))
    return {"events": evs, "km": km, "truncated": truncated}


async def fuel_window(store, cfg: DrivingConfig, vehicles: list[str], start_ms: int,
                      end_ms: int, sig: events.Signals = events.DEFAULT_SIGNALS,
                      keep: bool = True) -> dict:
    """{"trips": [...], "events": [...], "idle": [...], "truncated"}: per vehicle and day,
    trip consumption, refuels and drops (with the position at the time) and idling events
    (their fuel), each starting within [start, end); whole days kept as folded_day keeps
    them."""
    check_size(vehicles, start_ms, end_ms)
    classes = await vehicle_classes(store)
    out: dict = {"trips": [], "events": [], "idle": [], "truncated": False}
    for v in vehicles:
        params = day_params(cfg, classes.get(v), v)
        for a, b in scorecard.split_days(start_ms, end_ms):
            day = await folded_day(store, v, params, a, b, sig, keep)
            out["truncated"] |= day["truncated"]
            for key in ("trips", "events", "idle"):
                out[key] += [{"vehicle": v, **x} for x in day["fuel"][key]]
    return out
