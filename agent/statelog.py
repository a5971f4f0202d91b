"""A state that is logged once when it changes, not on every event that reports it."""

from __future__ import annotations

import logging


class StateLog:
    """Holds `state` (and its `detail`); `set()` logs only a change.

    warn: states logged at WARNING (the others at INFO). log_first: the first `set()` is
    logged even when it repeats the initial state (a device that never opens must say why
    once). detail_changes: a new detail with the same state counts as a change.
    """

    def __init__(self, logger: logging.Logger, label: str, state: str, *,
                 warn: frozenset[str] | set[str] = frozenset(), log_first: bool = False,
                 detail_changes: bool = False, fmt: str = "%s: %s%s") -> None:
        self.label, self.state, self.detail = label, state, ""
        self.changes = 0
        self._log, self._warn, self._fmt = logger, frozenset(warn), fmt
        self._unlogged = log_first
        self._detail_changes = detail_changes

    def set(self, state: str, detail: str = "") -> bool:
        """Take `state`; returns whether it (or, with detail_changes, its detail) changed."""
        changed = state != self.state or (self._detail_changes and detail != self.detail)
        if state != self.state:
            self.changes += 1
        self.state, self.detail = state, detail
        if not (changed or self._unlogged):
            return False
        self._unlogged = False
        level = logging.WARNING if state in self._warn else logging.INFO
        self._log.log(level, self._fmt, self.label, state, f" ({detail})" if detail else "")
        return changed
