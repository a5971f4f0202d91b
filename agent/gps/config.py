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
from .tcp_source import TcpGpsSource

# Rates a serial NMEA receiver is realistically configured for.
VALID_BAUDS = frozenset({*BAUD_RATES, 19200, 57600, 230400, 460800})
_DECIMATION = {
    "min_interval_s_parked": (0.0, 86400.0),
    "min_interval_s_moving": (0.0, 86400.0),
    "min_distance_m": (0.0, 100_000.0),
    "min_heading_change_deg": (0.0, 180.0),
    "parked_speed_kmh": (0.0, 100.0),
}
KEYS = frozenset({"device", "baud", "require_checksum", "gpsd", "tcp", "max_speed_kmh",
                  "decimate", *_DECIMATION})
# Where the position comes from: exactly one of these keys.
TRANSPORTS = ("device", "gpsd", "tcp")


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
    chosen = [key for key in TRANSPORTS if key in section]
    if len(chosen) > 1:
        raise ConfigError(f"{where}: set only one of 'device', 'gpsd' and 'tcp', "
                          f"not {' and '.join(repr(k) for k in chosen)}")
    if "gpsd" in section:
        host, port = _address(section["gpsd"], "gpsd", GPSD_PORT, where)
        return GpsdSource(host, port, decimator=decimator, max_speed_kmh=max_speed)
    require_checksum = section.get("require_checksum", True)
    if not isinstance(require_checksum, bool):
        raise ConfigError(f"{where}: 'require_checksum' must be true or false")
    if "tcp" in section:
        if "baud" in section:
            raise ConfigError(f"{where}: 'baud' applies to a serial 'device', not to 'tcp'")
        host, port = _address(section["tcp"], "tcp", None, where)
        return TcpGpsSource(host, port, require_checksum=require_checksum,
                            decimator=decimator, max_speed_kmh=max_speed)
    device = section.get("device")
    if not isinstance(device, str) or not device:
        raise ConfigError(f"{where}: 'device' (e.g. \"/dev/ttyACM0\"), 'gpsd' or 'tcp' "
                          "is required")
    baud = section.get("baud", "auto")
    if baud != "auto" and (isinstance(baud, bool) or baud not in VALID_BAUDS):
        raise ConfigError(f"{where}: 'baud' must be \"auto\" or one of {sorted(VALID_BAUDS)}")
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


def _address(value: Any, key: str, default_port: int | None, where: str) -> tuple[str, int]:
    """"host:port" ("[::1]:port" for IPv6), or "host" alone when there is a default port."""
    form = '"host" or "host:port"' if default_port else '"host:port"'
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key!r} must be {form}")
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        sep, port = rest[:1], rest[1:]
        if rest and sep != ":":
            host = ""
    else:
        host, sep, port = value.partition(":")
        if ":" in port:  # a bare IPv6 address is ambiguous without brackets
            host = ""
    if not sep and host and default_port is not None:
        return host, default_port
    if not (host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"{where}: {key!r} must be {form}, got {value!r}")
    return host, int(port)
