"""The CAN signal names the backend reads by default: one table for maintenance, driver
behaviour, fuel, the signal alert rules and the test drives.

Each is the name the shipped J1939 DBC (agent/dbc/truck_j1939.dbc) gives the parameter, or,
for the driver identification (variable-length ASCII a DBC cannot describe), the name the
agent's J1939 text decoder emits (agent/can/j1939text.py). A vehicle with another DBC sets its
own names in the backend TOML (docs/maintenance.md, docs/driving.md);
tests/unit/geostream/test_signalnames.py checks every default against the DBC.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass


@dataclass(frozen=True)
class SignalNames:
    """Parameter → signal name, with its J1939 parameter group (PGN) and SPN."""

    engine_speed: str = "EngSpeed"  # EEC1, PGN 61444, SPN 190 (rpm)
    wheel_speed: str = "WheelBasedVehicleSpeed"  # CCVS1, PGN 65265, SPN 84 (km/h)
    fuel_rate: str = "EngFuelRate"  # LFE1, PGN 65266, SPN 183 (L/h)
    fuel_level: str = "FuelLevel1"  # DD1, PGN 65276, SPN 96 (% of the tank)
    odometer: str = "HighResTotalVehicleDistance"  # VDHR, PGN 65217, SPN 917 (km)
    engine_hours: str = "EngTotalHoursOfOperation"  # HOURS, PGN 65253, SPN 247 (h)
    battery: str = "BatteryPotential_PowerInput1"  # VEP1, PGN 65271, SPN 168 (V)
    ambient: str = "AmbientAirTemp"  # AMB, PGN 65269, SPN 171 (°C)
    coolant: str = "EngCoolantTemp"  # ET1, PGN 65262, SPN 110 (°C)
    oil_temp: str = "EngOilTemp1"  # ET1, PGN 65262, SPN 175 (°C)
    long_acc: str = "LongitudinalAcceleration"  # VDC2, PGN 61449, SPN 1810 (m/s²)
    lat_acc: str = "LateralAcceleration"  # VDC2, PGN 61449, SPN 1809 (m/s²)
    driver: str = "Driver1Identification"  # DI, PGN 65131, SPN 1625 (ASCII)

    def all(self) -> tuple[str, ...]:
        return astuple(self)

    def driving(self) -> list[str]:
        """The signals the driving-event detectors read (events.py)."""
        return [self.engine_speed, self.wheel_speed, self.fuel_rate, self.long_acc,
                self.lat_acc, self.driver]


NAMES = SignalNames()
