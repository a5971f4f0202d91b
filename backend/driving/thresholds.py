"""Harsh-driving thresholds per vehicle class (backend/dispatch/model.py VehicleClass), tank
sizes, and the `[driving]` table of the backend TOML that sets them."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..dispatch.model import VehicleClass


@dataclass(frozen=True)
class Thresholds:
    """Accelerations in m/s² at and beyond which a manoeuvre is harsh; idling longer than
    `idle_minutes` with the engine on and the vehicle standing is an idling event."""

    accel_ms2: float
    brake_ms2: float  # a deceleration, positive
    corner_ms2: float  # lateral
    idle_minutes: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not 0 < value <= 100:
                raise ValueError(f"[driving] {f.name} must be a number in (0, 100]")


# Telematics practice: a car's harsh brake is about 0.35 g; a heavy truck cannot brake, speed
# up or corner as hard without its load moving, so its limits are lower. Bikes and walkers
# are not scored (no engine, and GPS speed on foot is mostly noise).
DEFAULTS: dict[VehicleClass, Thresholds] = {
    VehicleClass.CAR: Thresholds(accel_ms2=3.0, brake_ms2=3.5, corner_ms2=3.5),
    VehicleClass.VAN: Thresholds(accel_ms2=2.7, brake_ms2=3.2, corner_ms2=3.0),
    VehicleClass.TRUCK: Thresholds(accel_ms2=2.0, brake_ms2=2.8, corner_ms2=2.5),
}
UNTYPED = VehicleClass.VAN  # a vehicle without a dispatch type is scored as a van


DEFAULT_TANK_L = 400.0  # a truck's tank: the fuel level is a % of it
MAX_TANK_L = 5000.0  # the largest road tanker's own tank is far below this


@dataclass(frozen=True)
class DrivingConfig:
    per_class: dict[VehicleClass, Thresholds]
    tank_l: float = DEFAULT_TANK_L
    tanks: dict[str, float] | None = None  # vehicle id → its tank, litres

    def tank_of(self, vehicle: str) -> float:
        return (self.tanks or {}).get(vehicle, self.tank_l)

    def for_class(self, vehicle_class: VehicleClass | None) -> Thresholds | None:
        """The thresholds of a class; None: the class is not scored."""
        return self.per_class.get(UNTYPED if vehicle_class is None else vehicle_class)


def parse_driving(raw: dict | None) -> DrivingConfig:
    """`[driving.<class>]` tables override the defaults' fields, e.g. [driving.truck]
    brake_ms2 = 2.5."""
    per = dict(DEFAULTS)
    raw = dict(raw or {})
    tank_l = raw.pop("tank_l", DEFAULT_TANK_L)
    tanks = raw.pop("tanks", {})
    if not isinstance(tanks, dict):
        raise ValueError("[driving] tanks must be a table of vehicle = litres")
    for name, litres in [("tank_l", tank_l), *tanks.items()]:
        if isinstance(litres, bool) or not isinstance(litres, int | float) or \
                not 0 < litres <= MAX_TANK_L:
            raise ValueError(f"[driving] tank of {name}: litres in (0, {MAX_TANK_L:g}]")
    for key, table in raw.items():
        try:
            cls = VehicleClass(key)
        except ValueError:
            raise ValueError(f"[driving]: unknown vehicle class {key!r}") from None
        if not isinstance(table, dict):
            raise ValueError(f"[driving.{key}] must be a table")
        known = {f.name for f in fields(Thresholds)}
        if set(table) - known:
            raise ValueError(f"[driving.{key}]: unknown keys {sorted(set(table) - known)}")
        base = per.get(cls) or DEFAULTS[VehicleClass.CAR]
        per[cls] = replace(base, **table)
    return DrivingConfig(per, float(tank_l), {str(k): float(v) for k, v in tanks.items()})
