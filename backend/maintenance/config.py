"""The `[maintenance]` table of the backend TOML (docs/maintenance.md)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from geostream.signalnames import NAMES

from .trend import TrendCheck

# the shipped J1939 DBC's names (geostream/signalnames.py): VDHR total distance in km, HOURS
# engine hours
DEFAULT_ODOMETER_SIGNAL = NAMES.odometer
DEFAULT_ENGINE_HOURS_SIGNAL = NAMES.engine_hours


@dataclass(frozen=True)
class Interval:
    """A service every `every` units of `by` (km, engine_h or days); "due" from `due_within`
    units before that point, "overdue" past it."""

    name: str
    by: str  # "km" | "engine_h" | "days"
    every: float
    due_within: float = 0.0
    # the plan's scope: these vehicles and the vehicles of these types (dispatch vehicle type
    # ids, backend/dispatch/model.py); both empty: every vehicle
    vehicles: tuple[str, ...] = ()
    vehicle_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("vehicles", "vehicle_types"):
            value = getattr(self, key)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"maintenance interval {self.name!r}: {key} must be a list "
                                 "of ids")
            object.__setattr__(self, key, tuple(value))
        if self.by not in ("km", "engine_h", "days"):
            raise ValueError(f"maintenance interval {self.name!r}: by must be km, engine_h "
                             "or days")
        if not self.every > 0 or not 0 <= self.due_within < self.every:
            raise ValueError(f"maintenance interval {self.name!r}: needs every > 0 and "
                             "0 <= due_within < every")


    def applies_to(self, vehicle: str, type_id: str | None) -> bool:
        """Whether this plan covers `vehicle` (of dispatch type `type_id`, None: untyped)."""
        if not self.vehicles and not self.vehicle_types:
            return True
        return vehicle in self.vehicles or (type_id is not None
                                            and type_id in self.vehicle_types)


@dataclass(frozen=True)
class HealthCheck:
    """A signal's baseline: its values in `band_signal` bands of `band_width` (e.g. coolant per
    10 % of engine load), or only while `rest_signal` < `rest_below` (battery at rest)."""

    signal: str
    band_signal: str = ""
    band_width: float = 10.0
    rest_signal: str = ""
    rest_below: float = 1.0
    max_z: float = 3.5  # robust z-score (median/MAD) beyond which a vehicle has drifted
    min_samples: int = 20  # per band and window, fewer say nothing
    # same conditions on several signals at once: [{signal, width}], e.g. speed per 20 km/h
    # and ambient temperature per 10 °C; a sample counts when every one is fresh
    bands: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        try:
            bands = tuple((str(b["signal"]), float(b["width"])) if isinstance(b, dict)
                          else (str(b[0]), float(b[1])) for b in self.bands)
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"maintenance health {self.signal!r}: bands must be a list of "
                             "{signal, width}") from None
        if any(w <= 0 for _, w in bands) or (bands and (self.band_signal or
                                                        self.rest_signal)):
            raise ValueError(f"maintenance health {self.signal!r}: band widths must be > 0, "
                             "and bands replace band_signal and rest_signal")
        object.__setattr__(self, "bands", bands)


@dataclass(frozen=True)
class MaintenanceConfig:
    intervals: tuple[Interval, ...] = ()
    health: tuple[HealthCheck, ...] = ()
    trends: tuple[TrendCheck, ...] = ()
    odometer_signal: str = DEFAULT_ODOMETER_SIGNAL
    engine_hours_signal: str = DEFAULT_ENGINE_HOURS_SIGNAL
    # baselines are the `baseline_days` before the recent `recent_hours`
    baseline_days: float = 14.0
    recent_hours: float = 24.0
    # how often the backend re-checks intervals and health
    check_every_s: float = 300.0


def _build(cls, raw: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"[{where}]: unknown keys {sorted(unknown)}")
    return cls(**raw)


def parse_maintenance(raw: dict | None) -> MaintenanceConfig:
    raw = dict(raw or {})
    intervals = tuple(_build(Interval, dict(i), "maintenance.interval")
                      for i in raw.pop("interval", []))
    health = tuple(_build(HealthCheck, dict(h), "maintenance.health")
                   for h in raw.pop("health", []))
    trends = tuple(_build(TrendCheck, dict(t), "maintenance.trend")
                   for t in raw.pop("trend", []))
    if len({i.name for i in intervals}) != len(intervals):
        raise ValueError("[maintenance.interval]: names must be unique")
    cfg = _build(MaintenanceConfig, raw, "maintenance")
    return MaintenanceConfig(**{**cfg.__dict__, "intervals": intervals, "health": health,
                                "trends": trends})
