"""The interface every reading source implements (serial NMEA, NMEA over TCP, gpsd, CAN bus, log
replay), and the base class that runs them.

Like python-can's `BusABC`, whose subclasses implement only `_recv_internal` and the base does
the rest: a source implements `_open` (get the device or connection), `_session` (read from it
until it ends) and `_close`; `ReopeningSource.run` owns the reopen loop, its backoff, the
counters every source shares and the state. The daemon depends on `Source` only. A source runs
until cancelled, calls `emit(reading)` for every reading it produces, never raises for bad
input (it counts and logs instead), and reports its state and counters through `status()`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

from geostream.backoff import Backoff

from .readings import Reading
from .statelog import StateLog

Emit = Callable[[Reading], None]

# First reopen delay: quick enough to catch a USB re-enumeration (~0.3 s) or a daemon restart.
REOPEN_MIN_S = 0.5
# Cap on the reopen delay: a replugged device or a restarted server is picked up within this
# long, and a missing one costs one attempt per this long.
REOPEN_MAX_S = 10.0


class SourceState(StrEnum):
    """Every source's `state` (and `status()["state"]`). The base class sets CLOSED, DOWN, the
    source's `open_state` and FINISHED; a session sets the others."""

    CLOSED = "closed"  # not opened yet
    DOWN = "down"  # opening failed, or the device or connection went away: reopening
    UP = "up"  # open (a CAN bus, a log being replayed)
    NO_FIX = "no fix"  # a GPS source is open but has had no fix for a while
    FIX = "fix"  # a GPS source delivers fixes
    BUS_OFF = "bus-off"  # the CAN controller went bus-off (it recovers by itself)
    FINISHED = "finished"  # a log replayed to its end: nothing more will come


# states logged at WARNING (the others at INFO)
WARN_STATES = frozenset({SourceState.DOWN, SourceState.BUS_OFF})


class Source(Protocol):
    name: str

    async def run(self, emit: Emit) -> None:
        """Produce readings until cancelled; reopen devices with backoff when they vanish."""

    def status(self) -> dict:
        """A JSON-able snapshot: `state` (a SourceState) and counters."""


class Finished(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by `_session`: the source has nothing more to read (a log replayed once)."""


class ReopeningSource(abc.ABC):
    """open → session → close, again and again with backoff, until cancelled.

    Counters (`counts`): `opens`, `open_failures`, `lost` (sessions that ended); subclasses add
    their own. One reset rule: a session in which data arrived (it called `heard()`) resets the
    backoff, so a device that opens and dies at once is retried ever more slowly, and one that
    worked is retried at once. `sleep` is injectable (tests drive the loop on a fake clock).
    """

    name = "source"
    # the exceptions that mean "cannot open now" / "the device went away" (others propagate)
    open_errors: tuple[type[BaseException], ...] = (OSError,)
    session_errors: tuple[type[BaseException], ...] = (OSError,)
    # the state right after a successful open
    open_state = SourceState.UP

    def __init__(self, label: str, logger: logging.Logger, *, reopen_min_s: float = REOPEN_MIN_S,
                 reopen_max_s: float = REOPEN_MAX_S,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.counts: Counter[str] = Counter(opens=0, open_failures=0, lost=0)
        self.backoff = Backoff(reopen_min_s, reopen_max_s)
        # the first state is logged even when it repeats the initial one: a device that never
        # opens (missing, or refused by the unit's DeviceAllow=) must say why once
        self._state = StateLog(logger, label, SourceState.CLOSED, warn=WARN_STATES,
                               log_first=True)
        self._sleep = sleep
        self._heard = False

    @property
    def state(self) -> SourceState:
        return self._state.state

    def set_state(self, state: SourceState, detail: str = "") -> None:
        self._state.set(state, detail)

    def heard(self) -> None:
        """Called by a session when data arrived: the next reopen starts from the first delay."""
        self._heard = True

    @abc.abstractmethod
    async def _open(self) -> Any:
        """Open the device or connection and return it; raise one of `open_errors` if not."""

    @abc.abstractmethod
    async def _session(self, handle: Any, emit: Emit) -> str:
        """Read from `handle` until it ends; return why it ended, raise one of `session_errors`
        when the device failed, or `Finished` when there will never be more."""

    @abc.abstractmethod
    async def _close(self, handle: Any) -> None:
        """Release `handle` (after every session, however it ended)."""

    async def run(self, emit: Emit) -> None:
        while True:
            try:
                handle = await self._open()
            except self.open_errors as exc:
                self.counts["open_failures"] += 1
                self.set_state(SourceState.DOWN, str(exc) or type(exc).__name__)
                await self._sleep(self.backoff.next())
                continue
            self.counts["opens"] += 1
            self.set_state(self.open_state, "open")
            self._heard = False
            reason = ""
            try:
                reason = await self._session(handle, emit)
            except Finished:
                reason = None
            except self.session_errors as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                await self._close(handle)
            if reason is None:
                self.set_state(SourceState.FINISHED)
                await asyncio.Event().wait()  # a source runs until cancelled
            self.counts["lost"] += 1
            self.set_state(SourceState.DOWN, reason)
            if self._heard:
                self.backoff.reset()
            await self._sleep(self.backoff.next())
