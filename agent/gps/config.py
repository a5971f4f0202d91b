"""`[gps]` section → GPS source (minimal; see docs/gps.md)."""

from __future__ import annotations

from ..config import ConfigError
from .serial_source import SerialGpsSource


def make_source(section: dict, where: str):
    if not section:
        return None
    device = section.get("device")
    if not isinstance(device, str) or not device:
        raise ConfigError(f"{where} [gps]: 'device' must be a device path")
    baud = section.get("baud", 9600)
    if not isinstance(baud, int):
        raise ConfigError(f"{where} [gps]: 'baud' must be an integer")
    return SerialGpsSource(device, baud)
