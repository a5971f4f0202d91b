"""Re-planning on events, the async edge: dispatch events and alerts go to the pure
`ReplanTriggers` (replan.py); when a re-plan is due it runs through the planning service and
the proposal goes to the hub (`{"topic": "dispatch", "proposal": {…}}`) for a dispatcher to
approve. One timer task at most; never raises into the path that reported the event.

Wiring (backend/service.py): the dispatcher's `on_event` and the published alerts. Other
parts ask for a re-plan with `Dispatcher.request_replan(cause)` (an inbound cancellation).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from .planning import PlanningError, live_proposal, proposal_json
from .replan import Replan, ReplanTriggers

log = logging.getLogger(__name__)


class Replanner:
    def __init__(self, planning, publish: Callable[..., None], clock: Callable[[], int],
                 live_vehicles: Callable[[], object]):
        self.planning, self.publish, self.clock = planning, publish, clock
        self.live_vehicles = live_vehicles  # the vehicles on a live route now
        self.triggers = ReplanTriggers()
        self.stats: Counter = Counter()
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task | None = None

    # --- events -------------------------------------------------------------------------

    def on_event(self, kind: str, *args) -> None:
        """From the dispatcher: ("job_added", job), ("transition", t, on_live_route),
        ("request", cause, unavailable)."""
        now = self.clock()
        if kind == "job_added":
            asked = self.triggers.job_added(args[0], now)
        elif kind == "transition":
            asked = self.triggers.transition(args[0], args[1], now)
        elif kind == "request":
            asked = self.triggers.request(args[0], now, frozenset(args[1]))
        else:
            return
        if asked:
            self._arm()

    def on_alert(self, alert: dict) -> None:
        if self.triggers.alert(alert, self.live_vehicles(), self.clock()):
            self._arm()

    # --- running ------------------------------------------------------------------------

    def _arm(self) -> None:
        due = self.triggers.due_ms
        if due is None or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a CLI): whoever drives it calls run_due
            return
        self._timer = loop.call_later(max(0.0, (due - self.clock()) / 1000), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self.run_due(),
                                                                   name="replan")

    async def run_due(self) -> dict | None:
        """Run the pending re-plan if it is due; the proposal's JSON, or None."""
        replan = self.triggers.take(self.clock())
        if replan is None:
            self._arm()
            return None
        try:
            return await self._run(replan)
        finally:
            self._arm()

    async def _run(self, replan: Replan) -> dict | None:
        from .solver_worker import PlannerBusy

        try:
            kept = await self.planning.replan(replan.cause, unavailable=replan.unavailable)
        except PlannerBusy:
            self.stats["retried"] += 1
            self.triggers.retry(replan, self.clock())
            return None
        except (PlanningError, ValueError) as exc:  # nothing to plan with, a stop off-road
            self.stats["failed"] += 1
            log.warning("re-plan (%s) not made: %s", replan.cause, exc)
            return None
        except Exception as exc:  # the solver process died, the store is away
            self.stats["failed"] += 1
            log.warning("re-plan (%s) failed: %s", replan.cause, exc)
            return None
        if kept is None:
            self.stats["nothing_under_way"] += 1
            return None
        if kept.proposal.diff.empty:  # the routes under way are still the best: no noise
            self.stats["no_change"] += 1
            await self.planning.store.close_proposal(kept.proposal.id, "dropped",
                                                     "re-plan: no change", self.clock())
            return None
        self.stats["proposed"] += 1
        # to the dispatchers who may see every vehicle it touches (backend/hub.py)
        self.publish("proposal", live_proposal(kept), None)
        return proposal_json(kept)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is not None:
            self._running.cancel()
