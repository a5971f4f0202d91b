"""The async edge of maintenance: read the store, run the pure rules, raise alerts.

Alerts go through the alert store like every other rule (docs/alerts.md): rule `service`
(subject: the interval name; open while due or overdue, `detail.level` says which, closed once
a service is recorded) and rule `signal_health` (subject: "signal band against"; open while
the robust z-score stays beyond the limit). Both are clock-driven (store.base.TIME_RULES), so
reading-driven re-evaluation never retracts them.
"""

from __future__ import annotations

import asyncio
import logging
import math

from ..alerts.evaluate import Episode
from ..store.base import AlertQuery
from . import dtc, health, intervals, trend
from .config import HealthCheck, MaintenanceConfig

log = logging.getLogger(__name__)

# GPS odometry reads at most this many positions per vehicle and interval (first per time
# bucket): a year at 10 s buckets would be 3 M rows, this keeps a check under a second.
MAX_ODOMETRY_POINTS = 50_000
MIN_ODOMETRY_STEP_MS = 5_000  # finer adds no distance worth the rows at town speeds
# Signal-health windows read at most this many samples per vehicle and signal.
MAX_HEALTH_SAMPLES = 50_000
MAX_DTC_EVENTS = 10_000  # per vehicle and query; agents send a set only when it changes
OPEN_LIMIT = 100_000
HOUR_MS = 3_600_000


async def _counter(store, vehicle: str, signal: str, since_ms: int, now_ms: int,
                   at_service: float | None) -> float | None:
    last = await store.signal_series(vehicle, signal, since_ms, now_ms + 1, 1, newest_first=True)
    if not last:  # nothing since: no use yet when the service noted the counter
        return None if at_service is None else 0.0
    if at_service is None:
        first = await store.signal_series(vehicle, signal, since_ms, now_ms + 1, 1)
        at_service = first[0][1]
    return intervals.counter_delta(at_service, last[0][1])


async def _positions(store, vehicle: str, since: int, now_ms: int) -> list[dict]:
    """Positions since `since`, at most MAX_ODOMETRY_POINTS: the first query (one point per
    coarse bucket) finds where the data begins, the second buckets only the span with data."""
    coarse = await store.route(vehicle, since, now_ms + 1,
                               max(1, math.ceil((now_ms + 1 - since) / MAX_ODOMETRY_POINTS)))
    if not coarse:
        return []
    first = coarse[0]["time_ms"]
    step = max(MIN_ODOMETRY_STEP_MS, math.ceil((now_ms + 1 - first) / MAX_ODOMETRY_POINTS))
    return await store.route(vehicle, first, now_ms + 1, step)


async def vehicle_types(store, cfg: MaintenanceConfig) -> dict[str, str]:
    """Vehicle id → dispatch vehicle type id, read only when a plan is scoped by type."""
    if not any(iv.vehicle_types for iv in cfg.intervals):
        return {}
    return {v.vehicle_id: v.type_id for v in await store.dispatch_vehicles()}


async def service_status(store, cfg: MaintenanceConfig, vehicle: str, created_ms: int,
                         now_ms: int, types: dict[str, str] | None = None
                         ) -> list[intervals.ServiceStatus]:
    """Every configured interval that covers one vehicle, from stored readings. `types`:
    vehicle_types() when the caller has it (else read here)."""
    if types is None:
        types = await vehicle_types(store, cfg)
    done = await store.last_services(vehicle)
    out = []
    for iv in cfg.intervals:
        if not iv.applies_to(vehicle, types.get(vehicle)):
            continue
        last = done.get(iv.name) or {}
        # counters and odometry from the last service, else over all stored history; the
        # calendar from the last service, else from the vehicle's creation
        since = last.get("done_ms") or (created_ms if iv.by == "days" else 0)
        used, source = None, "none"
        if iv.by == "km":
            used = await _counter(store, vehicle, cfg.odometer_signal, since, now_ms,
                                  last.get("odometer_km"))
            source = "can-odometer"
            if used is None:
                points = await _positions(store, vehicle, since, now_ms)
                used, source = (intervals.gps_km(points), "gps") if points else (None, "none")
        elif iv.by == "engine_h":
            used = await _counter(store, vehicle, cfg.engine_hours_signal, since, now_ms,
                                  last.get("engine_h"))
            source = "can-engine-hours"
        out.append(intervals.status(vehicle, iv, used, since, now_ms, source))
    return out


async def fleet_due(store, cfg: MaintenanceConfig, vehicles: list[dict],
                    now_ms: int) -> list[intervals.ServiceStatus]:
    """Every plan of every vehicle given (rows of store.list_vehicles()), the most urgent
    first: overdue, due, unknown, ok; within a state, the smallest share of the interval left."""
    types = await vehicle_types(store, cfg)
    out = []
    for v in vehicles:
        out += await service_status(store, cfg, v["vehicle_id"], v.get("created_ms") or 0,
                                    now_ms, types)
    return sorted(out, key=intervals.ServiceStatus.urgency)


async def distance_km(store, cfg: MaintenanceConfig, vehicle: str, start_ms: int,
                      end_ms: int) -> tuple[float | None, str]:
    """km driven in [start, end): the CAN odometer's growth, else GPS odometry; with the
    source (can-odometer | gps | none)."""
    km = await _counter(store, vehicle, cfg.odometer_signal, start_ms, end_ms - 1, None)
    if km is not None:
        return km, "can-odometer"
    points = await _positions(store, vehicle, start_ms, end_ms - 1)
    return (intervals.gps_km(points), "gps") if points else (None, "none")


async def fleet_dtcs(store, cfg: MaintenanceConfig, vehicles: list[str], start_ms: int,
                     end_ms: int) -> dict[str, list[dict]]:
    """Per vehicle, its trouble codes as a workflow (dtc.workflow) over [start, end), each row
    with the distance it is counted against and the other vehicles (of `vehicles`) showing
    the same code."""
    out = {}
    for v in vehicles:
        episodes = dtc.fold(await store.events(v, "dtc", start_ms, end_ms, MAX_DTC_EVENTS))
        if not episodes:
            continue
        km, source = await distance_km(store, cfg, v, start_ms, end_ms)
        rows = dtc.workflow(episodes, km)
        for r in rows:
            r.update(vehicle=v, km=None if km is None else round(km, 1), km_source=source)
        out[v] = rows
    dtc.shared_codes(out)
    return out


async def trouble_codes(store, vehicle: str, start_ms: int, end_ms: int) -> list[dict]:
    return dtc.fold(await store.events(vehicle, "dtc", start_ms, end_ms, MAX_DTC_EVENTS))


async def _series(store, vehicle: str, signal: str, start_ms: int, now_ms: int
                  ) -> list[tuple[int, float]]:
    """The newest MAX_HEALTH_SAMPLES of a signal since `start_ms`, oldest first."""
    rows = await store.signal_series(vehicle, signal, start_ms, now_ms + 1, MAX_HEALTH_SAMPLES,
                                     newest_first=True)
    rows.reverse()
    return rows


async def forecasts(store, cfg: MaintenanceConfig, vehicles: list[str], now_ms: int
                    ) -> list[dict]:
    """Every configured trend's forecast per vehicle (trend.forecast; those with none are
    left out), soonest first, then every peer deviation beyond its limit (signal_health's
    fleet findings). Each names its method."""
    out = []
    for check in cfg.trends:
        start = now_ms - round(check.days * trend.DAY_MS)
        for v in vehicles:
            samples = await _series(store, v, check.signal, start, now_ms)
            if check.rest_signal:
                rest = await _series(store, v, check.rest_signal, start, now_ms)
                samples = [(t, x) for t, x, _ in health.condition(
                    samples, rest, HealthCheck(check.signal, rest_signal=check.rest_signal,
                                               rest_below=check.rest_below))]
            f = trend.forecast(v, check, samples, now_ms)
            if f is not None:
                out.append(f)
    out.sort(key=lambda f: f["days_to_threshold"])
    peers = [{**f, "kind": "peer", "text": (
                 f"{f['signal']} {f['median']:g} against its peers' {f['fleet']['median']:g} "
                 f"at {f['band']} (robust z {f['z']:g})")}
             for f in await signal_health(store, cfg, vehicles, now_ms)
             if f["against"] == "fleet" and f["drifted"]]
    return out + sorted(peers, key=lambda f: -abs(f["z"]))


async def signal_health(store, cfg: MaintenanceConfig, vehicles: list[str],
                        now_ms: int) -> list[dict]:
    """Own-baseline and fleet findings of every configured check (numbers included)."""
    recent_from = now_ms - round(cfg.recent_hours * HOUR_MS)
    start = recent_from - round(cfg.baseline_days * 24 * HOUR_MS)
    findings = []
    for check in cfg.health:
        recent: dict[str, dict[str, list[float]]] = {}
        for v in vehicles:
            samples = await store.signal_series(v, check.signal, start, now_ms + 1,
                                                MAX_HEALTH_SAMPLES, newest_first=True)
            samples.reverse()
            if check.bands:
                conds = {sig: await _series(store, v, sig, start, now_ms)
                         for sig, _ in check.bands}
                rows = health.condition_bands(samples, conds, check)
            else:
                cond_signal = check.band_signal or check.rest_signal
                cond = (await _series(store, v, cond_signal, start, now_ms)
                        if cond_signal else None)
                rows = health.condition(samples, cond, check)
            findings += health.own_drift(v, check, rows, recent_from)
            for t, value, band in rows:
                if t >= recent_from:
                    recent.setdefault(v, {}).setdefault(band, []).append(value)
        findings += health.fleet_drift(check, recent)
    return findings


class MaintenanceMonitor:
    """Runs the checks on the backend's clock and keeps the alerts in step."""

    def __init__(self, store, cfg: MaintenanceConfig, publish=None):
        self.store, self.cfg, self.publish = store, cfg, publish
        self.stats = {"checks": 0, "failures": 0}
        # one round at a time: a timer check that computed "due" before a service was recorded
        # must not reopen the alert after_service has just closed
        self._lock = asyncio.Lock()

    async def intervals_of(self, vehicle: str) -> frozenset[str]:
        """The names of the plans that cover `vehicle`: what a service may be recorded for."""
        types = await vehicle_types(self.store, self.cfg)
        return frozenset(iv.name for iv in self.cfg.intervals
                         if iv.applies_to(vehicle, types.get(vehicle)))

    async def after_service(self, vehicle: str, created_ms: int, now_ms: int) -> list:
        """Right after a service is recorded: close the vehicle's open `service` alerts whose
        interval is no longer due (the rest wait for the next check). Returns the changes."""
        async with self._lock:
            return await self._after_service(vehicle, created_ms, now_ms)

    async def _after_service(self, vehicle: str, created_ms: int, now_ms: int) -> list:
        ok = {s.interval for s in await service_status(self.store, self.cfg, vehicle,
                                                          created_ms, now_ms)
              if s.state not in ("due", "overdue")}
        changes = [Episode(a.rule, a.vehicle_id, a.start_ms, now_ms, a.subject, a.peak, a.lat,
                           a.lon, a.detail, now_ms)
                   for a in await self.store.list_alerts(AlertQuery(
                       vehicle=vehicle, rule="service", state="open", limit=OPEN_LIMIT))
                   if a.subject in ok]
        saved = await self.store.save_alerts(changes, [], now_ms) if changes else []
        if self.publish is not None:
            for alert, _ in saved:
                self.publish(alert.as_json())
        return saved

    async def check(self, now_ms: int) -> list:
        """One round: compute, then open/update/close alerts. Returns the changed alerts."""
        async with self._lock:
            return await self._check(now_ms)

    async def _check(self, now_ms: int) -> list:
        vehicles = [v for v in await self.store.list_vehicles() if v.get("revoked_ms") is None]
        types = await vehicle_types(self.store, self.cfg)
        wanted: dict[tuple[str, str, str], tuple[float | None, dict]] = {}
        for v in vehicles:
            for s in await service_status(self.store, self.cfg, v["vehicle_id"],
                                          v.get("created_ms") or 0, now_ms, types):
                if s.state in ("due", "overdue"):
                    wanted[("service", s.vehicle, s.interval)] = (
                        s.remaining, {"level": s.state, **s.as_json()})
        for f in await signal_health(self.store, self.cfg, [v["vehicle_id"] for v in vehicles],
                                     now_ms):
            if f["drifted"]:
                subject = f"{f['signal']} {f['band']} {f['against']}"
                wanted[("signal_health", f["vehicle"], subject)] = (f["z"], f)
        changes = []
        open_ = {}
        for rule in ("service", "signal_health"):
            for a in await self.store.list_alerts(AlertQuery(rule=rule, state="open",
                                                             limit=OPEN_LIMIT)):
                open_[(a.rule, a.vehicle_id, a.subject)] = a
        for key, a in open_.items():
            if key not in wanted:
                changes.append(Episode(a.rule, a.vehicle_id, a.start_ms, now_ms, a.subject,
                                       a.peak, a.lat, a.lon, a.detail, now_ms))
        for key, (peak, detail) in wanted.items():
            a = open_.get(key)
            if a is None:
                changes.append(Episode(key[0], key[1], now_ms, None, key[2], peak, None, None,
                                       detail, now_ms))
            elif a.detail.get("level") != detail.get("level"):
                changes.append(Episode(a.rule, a.vehicle_id, a.start_ms, None, a.subject, peak,
                                       a.lat, a.lon, detail, now_ms))
        saved = await self.store.save_alerts(changes, [], now_ms) if changes else []
        self.stats["checks"] += 1
        if self.publish is not None:
            for alert, _ in saved:
                self.publish(alert.as_json())
        return saved
