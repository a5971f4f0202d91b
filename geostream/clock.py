"""The one wall-clock helper of the agent and the backend.

Readings, commands, alerts and every stored time are integer milliseconds since 1970 (UTC);
durations and timers use the monotonic clock (`time.monotonic`, or the event loop's `time()`)
instead, and pure cores take `now` as an argument, so a test can drive them with its own.
"""

from __future__ import annotations

import time


def wall_ms() -> int:
    """The wall clock in integer milliseconds since 1970 (UTC)."""
    return time.time_ns() // 1_000_000
