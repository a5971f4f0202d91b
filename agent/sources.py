"""The interface every reading source implements (serial NMEA, gpsd, CAN bus, log replay).

Like python-can's BusABC: the daemon depends on this shape only. A source runs until
cancelled, calls `emit(reading)` for every reading it produces, never raises for bad input
(it counts and logs instead), and reports its state and counters through `status()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .readings import Reading

Emit = Callable[[Reading], None]


class Source(Protocol):
    name: str

    async def run(self, emit: Emit) -> None:
        """Produce readings until cancelled; reopen devices with backoff when they vanish."""

    def status(self) -> dict:
        """A JSON-able snapshot: state (e.g. "no device" / "no fix" / "fix") and counters."""
