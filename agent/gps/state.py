"""Source state ("no device" / "no fix" / "fix") that logs once per change, not per event."""

from __future__ import annotations

import logging

from ..statelog import StateLog

NO_DEVICE, NO_FIX, FIX = "no device", "no fix", "fix"


class SourceState(StateLog):
    """A GPS source's state; the first one is logged even when it is the initial one: a
    device that never opens (missing, or refused by the unit's DeviceAllow=/groups) must say
    why once."""

    def __init__(self, label: str, logger: logging.Logger) -> None:
        super().__init__(logger, f"gps {label}", NO_DEVICE, warn={NO_DEVICE}, log_first=True)
