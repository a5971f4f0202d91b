"""Exponential backoff with jitter: the one retry policy of the agent and the backend.

Pure: `next()` returns the delay to wait before the next attempt and doubles the one after;
`reset()` returns to the first delay after a success. The random source is injectable, so
tests get exact delays.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable


class Backoff:
    """Delays min_s, 2·min_s, 4·min_s … up to max_s, each shortened by up to `jitter`.

    jitter=0.5 draws each delay uniformly from [d/2, d]: a fleet that lost the backend
    together does not come back in step, and the wait never exceeds d.
    """

    def __init__(self, min_s: float, max_s: float, *, factor: float = 2.0, jitter: float = 0.0,
                 random: Callable[[], float] = _random.random) -> None:
        if not 0 < min_s <= max_s or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("need 0 < min_s <= max_s, factor >= 1, 0 <= jitter <= 1")
        self.min_s, self.max_s, self.factor, self.jitter = min_s, max_s, factor, jitter
        self._random = random
        self.current = min_s  # the delay next() returns before jitter
        self.attempts = 0  # next() calls since the last reset()

    def next(self) -> float:
        """The delay before the next attempt; the one after it grows by `factor`."""
        d = self.current
        self.current = min(d * self.factor, self.max_s)
        self.attempts += 1
        if not self.jitter:
            return d
        low = d * (1 - self.jitter)
        return low + (d - low) * self._random()

    def reset(self) -> None:
        """An attempt succeeded: start again from min_s."""
        self.current = self.min_s
        self.attempts = 0
