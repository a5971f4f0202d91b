"""Source state ("no device" / "no fix" / "fix") that logs once per change, not per event."""

from __future__ import annotations

import logging

NO_DEVICE, NO_FIX, FIX = "no device", "no fix", "fix"


class SourceState:
    def __init__(self, label: str, logger: logging.Logger) -> None:
        self.label = label
        self.state = NO_DEVICE
        self.changes = 0
        self._log = logger
        # the first state is logged even when it is the initial one: a device that never
        # opens (missing, or refused by the unit's DeviceAllow=/groups) must say why once
        self._logged = False

    def set(self, state: str, detail: str = "") -> None:
        if state == self.state and self._logged:
            return
        if state != self.state:
            self.state = state
            self.changes += 1
        self._logged = True
        level = logging.WARNING if state == NO_DEVICE else logging.INFO
        self._log.log(level, "gps %s: %s%s", self.label, state, f" ({detail})" if detail else "")
