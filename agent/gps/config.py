"""The agent TOML's `[gps]` table -> a configured GPS source. docs/gps.md lists the keys."""

from __future__ import annotations

from typing import Any

from ..config import ConfigError
from ..sources import Source
from .autobaud import BAUD_RATES
from .decimate import Decimator
from .gpsd import GPSD_PORT, GpsdSource
from .sanity import MAX_SPEED_KMH
from .serial_source import SerialGpsSource

# Rates a serial NMEA receiver is realistically configured for.
VALID_BAUDS = frozenset({*BAUD_RATES, 19200, 57600, 230400, 460800})
_DECIMATION = {
    "min_interval_s_parked": (0.0, 86400.0),
    "min_interval_s_moving": (0.0, 86400.0),
    "min_distance_m": (0.0, 100_000.0),
    "min_heading_change_deg": (0.0, 180.0),
    "parked_speed_kmh": (0.0, 100.0),
}
KEYS = frozenset({"device", "baud", "require_checksum", "gpsd", "max_speed_kmh",
                  "decimate", *_DECIMATION})


def make_source(section: dict[str, Any], where: str) -> Source | None:
    """Build the GPS source, or None when `[gps]` is absent or empty. Raises ConfigError
    naming the offending key."""
    if not section:
        return None
    where = f"{where} [gps]"
    for key in section:
        if key not in KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}")
    decimator = _decimator(section, where)
    max_speed = _number(section, "max_speed_kmh", MAX_SPEED_KMH, (10.0, 2000.0), where)
    if "gpsd" in section:
        if "device" in section:
            raise ConfigError(f"{where}: set either 'device' or 'gpsd', not both")
        host, port = _gpsd_address(section["gpsd"], where)
        return GpsdSource(host, port, decimator=decimator, max_speed_kmh=max_speed)
    device = section.get("device")
    if not isinstance(device, str) or not device:
        raise ConfigError(f"{where}: 'device' (e.g. \"/dev/ttyACM0\") or 'gpsd' is required")
    baud = section.get("baud", "auto")
    if baud != "auto" and (isinstance(baud, bool) or baud not in VALID_BAUDS):
        raise ConfigError(f"{where}: 'baud' must be \"auto\" or one of {sorted(VALID_BAUDS)}")
    require_checksum = section.get("require_checksum", True)
    if not isinstance(require_checksum, bool):
        raise ConfigError(f"{where}: 'require_checksum' must be true or false")
    return SerialGpsSource(device, baud, require_checksum=require_checksum,
                           decimator=decimator, max_speed_kmh=max_speed)


def _number(section: dict, key: str, default: float, bounds: tuple[float, float],
            where: str) -> float:
    value = section.get(key, default)
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{where}: {key!r} must be a number from {lo:g} to {hi:g}")
    return float(value)


def _decimator(section: dict, where: str) -> Decimator | None:
    enabled = section.get("decimate", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: 'decimate' must be true or false")
    defaults = Decimator()
    values = {key: _number(section, key, getattr(defaults, key), bounds, where)
              for key, bounds in _DECIMATION.items()}
    return Decimator(**values) if enabled else None


def _gpsd_address(value: Any, where: str) -> tuple[str, int]:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: 'gpsd' must be \"host\" or \"host:port\"")
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, GPSD_PORT
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: 'gpsd' must be \"host\" or \"host:port\", got {value!r}")
    return host.strip("[]"), int(port)
