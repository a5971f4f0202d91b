"""Scripted drives with known events, for the behaviour, fuel and prediction detectors' tests.

Sans-IO: `DriveBuilder` advances a vehicle second by second through named manoeuvres (cruise,
accelerate, brake, turn, idle, park, refuel, drain) and records what it did in `truth` (the
times a detector should find). It emits what the agent would store: positions (1 Hz, with a
little GPS noise) and CAN signals under the J1939 names of `SIGNALS`. Nothing here reads a
clock or the network; a seed makes the noise repeatable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from geostream.signalnames import NAMES

EARTH_R = 6_371_000.0
TANK_L = 400.0  # a truck's tank: the fuel level signal is a percentage of it
# CAN signal names the drive emits: the backend's defaults (geostream/signalnames.py, the J1939
# names of the shipped DBC), under this module's short keys
SIGNALS = {
    "odometer": NAMES.odometer, "fuel_rate": NAMES.fuel_rate, "fuel_level": NAMES.fuel_level,
    "battery": NAMES.battery, "ambient": NAMES.ambient, "coolant": NAMES.coolant,
    "oil": NAMES.oil_temp, "rpm": NAMES.engine_speed, "speed": NAMES.wheel_speed,
    "driver": NAMES.driver, "long_acc": NAMES.long_acc, "lat_acc": NAMES.lat_acc,
    "engine_hours": NAMES.engine_hours,
}
IDLE_LPH = 2.5  # fuel burnt idling
ALTERNATOR_V = 14.1  # battery potential while the engine runs
LEVEL_NOISE_PCT = 0.6  # sloshing: the level sensor's noise, in % of the tank (σ)
SPEED_NOISE_KMH = 0.4  # GPS speed noise (σ)
POS_NOISE_M = 1.5  # GPS position noise (σ)


@dataclass
class Drive:
    """What a drive produced: positions, CAN samples and the truth about its events."""

    positions: list[dict] = field(default_factory=list)  # time_ms, lat, lon, speed_kmh, course
    signals: list[tuple[int, dict]] = field(default_factory=list)  # (time_ms, {name: value})
    truth: dict[str, list] = field(default_factory=dict)

    def series(self, key: str) -> list[tuple[int, float]]:
        """(time_ms, value) of one signal (a SIGNALS key)."""
        name = SIGNALS[key]
        return [(t, s[name]) for t, s in self.signals if name in s]


class DriveBuilder:
    """A vehicle moving second by second; each manoeuvre appends readings and, for events a
    detector should find, a line of `truth`."""

    def __init__(self, start_ms: int, lat: float = 53.55, lon: float = 9.99, seed: int = 1,
                 fuel_pct: float = 50.0, battery_rest_v: float = 12.7,
                 ambient_c: float = 15.0, driver: str | None = None, can_acc: bool = False):
        self.t_ms = start_ms
        self.start_ms = start_ms
        self.lat, self.lon = lat, lon
        self.rng = random.Random(seed)
        self.kmh = 0.0
        self.course = 90.0
        self.fuel_l = fuel_pct / 100 * TANK_L
        self.odometer_km = 10_000.0
        self.engine_h = 5_000.0
        self.battery_rest_v = battery_rest_v
        self.battery_slope_v_per_day = 0.0
        self.ambient_c = ambient_c
        self.coolant_offset = 0.0
        self.driver = driver
        self.can_acc = can_acc
        self.engine_on = False
        self.fuel_factor = 1.0  # an engine that burns this much of the model's fuel rate
        self.drive = Drive()

    # --- the truth -----------------------------------------------------------------------
    def mark(self, kind: str, value) -> None:
        self.drive.truth.setdefault(kind, []).append(value)

    # --- one second ----------------------------------------------------------------------
    def _step(self, to_kmh: float, turn_dps: float = 0.0, fuel_lph: float | None = None,
              every_s: int = 1) -> None:
        dt = every_s
        prev = self.kmh
        self.kmh = max(0.0, to_kmh)
        self.course = (self.course + turn_dps * dt) % 360
        mean_ms = (prev + self.kmh) / 2 / 3.6
        d = mean_ms * dt
        rad = math.radians(self.course)
        self.lat += math.degrees(d * math.cos(rad) / EARTH_R)
        self.lon += math.degrees(d * math.sin(rad) / (EARTH_R * math.cos(math.radians(self.lat))))
        self.odometer_km += d / 1000
        if self.engine_on:
            self.engine_h += dt / 3600
        if fuel_lph is None:
            accel = (self.kmh - prev) / 3.6 / dt
            fuel_lph = self.fuel_factor * (2.5 + 0.28 * self.kmh + max(0.0, accel) * 25.0) \
                if self.engine_on else 0.0
        self.fuel_l = max(0.0, self.fuel_l - fuel_lph * dt / 3600)
        self.t_ms += dt * 1000
        self._emit(fuel_lph, (self.kmh - prev) / 3.6 / dt, turn_dps)

    def _emit(self, fuel_lph: float, long_acc: float, turn_dps: float) -> None:
        r = self.rng
        noise = POS_NOISE_M / EARTH_R
        speed = max(0.0, self.kmh + r.gauss(0, SPEED_NOISE_KMH)) if self.kmh > 0 else 0.0
        self.drive.positions.append({
            "time_ms": self.t_ms, "lat": self.lat + math.degrees(r.gauss(0, noise)),
            "lon": self.lon + math.degrees(r.gauss(0, noise)), "speed_kmh": round(speed, 2),
            "course_deg": round(self.course % 360, 1)})
        days = (self.t_ms - self.start_ms) / 86_400_000
        rest_v = self.battery_rest_v + self.battery_slope_v_per_day * days
        sig = {
            SIGNALS["odometer"]: round(self.odometer_km, 3),
            SIGNALS["engine_hours"]: round(self.engine_h, 2),
            SIGNALS["speed"]: round(self.kmh, 2),
            SIGNALS["rpm"]: (600 + self.kmh * 15) if self.engine_on else 0.0,
            SIGNALS["fuel_rate"]: round(fuel_lph, 2),
            SIGNALS["fuel_level"]: round(min(100.0, max(0.0, self.fuel_l / TANK_L * 100
                                                       + r.gauss(0, LEVEL_NOISE_PCT))), 1),
            SIGNALS["battery"]: round((ALTERNATOR_V if self.engine_on else rest_v)
                                      + r.gauss(0, 0.02), 3),
            SIGNALS["ambient"]: self.ambient_c,
            SIGNALS["coolant"]: round((88.0 if self.engine_on else self.ambient_c)
                                      + self.coolant_offset + r.gauss(0, 0.5), 1),
        }
        if self.driver is not None:
            sig[SIGNALS["driver"]] = self.driver
        if self.can_acc:
            sig[SIGNALS["long_acc"]] = round(long_acc, 2)
            sig[SIGNALS["lat_acc"]] = round(self.kmh / 3.6 * math.radians(turn_dps), 2)
        self.drive.signals.append((self.t_ms, sig))

    # --- manoeuvres ----------------------------------------------------------------------
    def start_engine(self) -> DriveBuilder:
        self.engine_on = True
        return self

    def stop_engine(self) -> DriveBuilder:
        self.engine_on = False
        return self

    def change_speed(self, seconds: int, to_kmh: float, harsh: str | None = None
                     ) -> DriveBuilder:
        """A linear speed change over `seconds`; `harsh` ("accel"/"brake") marks it as an
        event a detector should find, at its start."""
        start, v0 = self.t_ms, self.kmh
        for i in range(1, seconds + 1):
            self._step(v0 + (to_kmh - v0) * i / seconds)
        if harsh:
            self.mark(f"harsh_{harsh}", (start, self.t_ms))
        return self

    def cruise(self, seconds: int, turn_dps: float = 0.0, harsh_turn: bool = False
               ) -> DriveBuilder:
        start = self.t_ms
        for _ in range(seconds):
            self._step(self.kmh, turn_dps)
        if harsh_turn:
            self.mark("harsh_corner", (start, self.t_ms))
        return self

    def idle(self, seconds: int, event: bool = False) -> DriveBuilder:
        """Standing with the engine on; `event`: long enough that a detector should find it."""
        start = self.t_ms
        self.start_engine()
        for _ in range(seconds):
            self._step(0.0, fuel_lph=IDLE_LPH)
        if event:
            self.mark("idle", (start, self.t_ms))
        return self

    def park(self, seconds: int, every_s: int = 600) -> DriveBuilder:
        """Engine off, standing; samples every `every_s` (an agent reporting while parked)."""
        self.stop_engine()
        self.kmh = 0.0
        for _ in range(seconds // every_s):
            self._step(0.0, fuel_lph=0.0, every_s=every_s)
        return self

    def refuel(self, litres: float, seconds: int = 180) -> DriveBuilder:
        """Standing, engine off, the level rising over `seconds`."""
        self.stop_engine()
        start = self.t_ms
        per_s = litres / seconds
        for _ in range(seconds):
            self.fuel_l = min(TANK_L, self.fuel_l + per_s)
            self._step(0.0, fuel_lph=0.0)
        self.mark("refuel", (start, self.t_ms, litres))
        return self

    def drain(self, fraction_of_tank: float, seconds: int = 300) -> DriveBuilder:
        """Standing, engine off, fuel leaving without being burnt (theft, a leak)."""
        self.stop_engine()
        start = self.t_ms
        litres = fraction_of_tank * TANK_L
        for _ in range(seconds):
            self.fuel_l = max(0.0, self.fuel_l - litres / seconds)
            self._step(0.0, fuel_lph=0.0)
        self.mark("drop", (start, self.t_ms, litres))
        return self


def calm_trip(b: DriveBuilder, minutes: int = 20) -> DriveBuilder:
    """Gentle driving: ~0.6 m/s² at most, wide bends, a gentle stop. No event in it."""
    b.start_engine()
    b.change_speed(40, 80)
    left = minutes * 60 - 80
    for i in range(max(1, left // 120)):
        b.cruise(100, turn_dps=0.0)
        b.cruise(20, turn_dps=1.5 if i % 2 else -1.5)  # a bend: 0.03 g at 80 km/h
    b.change_speed(40, 0)
    return b
