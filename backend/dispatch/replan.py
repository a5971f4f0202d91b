"""Which dispatch events ask for a re-plan, and when it runs: a pure object that takes `now`.

Events (docs/planning.md, "Re-planning on events"):

- an urgent job added (priority ≥ `URGENT_PRIORITY`): it should not wait for tomorrow;
- a stop failed on a live route, or a job on a live route cancelled (by a dispatcher, or an
  inbound integration): the route's remaining order may no longer be the best;
- a vehicle on a live route offline (its `offline` alert opened): its stops not yet started
  should go to the others — the vehicle is *unavailable* in that re-plan;
- a stop at risk of being late (its `late_risk` alert opened; its later changes do not ask
  again);
- anyone asking (`request`, e.g. an integration after an inbound change).

Events close together are one re-plan: the first starts a `COALESCE_MS` wait and every event
until then adds its cause. A re-plan that cannot run now (another plan is running) is tried
again `RETRY_MS` later with the same causes. The result is a proposal for a dispatcher to
approve, never a change.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Job, JobState, Transition

# A job at least this urgent (priority 0–100) asks for a re-plan when added.
URGENT_PRIORITY = 80
# Events within this many ms of the first become one re-plan: a burst (a vehicle's stops all
# failing, an import of urgent jobs) makes one proposal, not one per event.
COALESCE_MS = 10_000
# A re-plan refused because another plan runs is tried again after this long (a plan of a
# fleet takes seconds, up to the solver's 14 s limit).
RETRY_MS = 15_000
# Causes named in one proposal (the rest are counted): the sentence stays readable.
MAX_CAUSES = 8
# Alerts remembered as already having asked: an open alert is published again on every
# change (its peak grows with each late ETA), and only its opening asks for a re-plan.
MAX_SEEN_ALERTS = 10_000


@dataclass(frozen=True)
class Replan:
    """A re-plan to run now: why, and which vehicles get no new work."""

    cause: str
    unavailable: frozenset[str] = frozenset()


class ReplanTriggers:
    def __init__(self):
        self._causes: list[str] = []
        self._unavailable: set[str] = set()
        self._due_ms: int | None = None
        self._seen_alerts: dict[str, None] = {}  # alert ids that asked already, oldest first

    @property
    def due_ms(self) -> int | None:
        """When the pending re-plan should run (None: nothing pending)."""
        return self._due_ms

    def request(self, cause: str, now_ms: int, unavailable: frozenset[str] = frozenset()) -> bool:
        """Ask for a re-plan because of `cause`; True (always: it is now pending)."""
        if cause not in self._causes:
            self._causes.append(cause)
        self._unavailable |= unavailable
        if self._due_ms is None:
            self._due_ms = now_ms + COALESCE_MS
        return True

    def job_added(self, job: Job, now_ms: int) -> bool:
        if job.priority < URGENT_PRIORITY:
            return False
        return self.request(f"urgent job {job.id} added (priority {job.priority})", now_ms)

    def transition(self, t: Transition, on_live_route: bool, now_ms: int) -> bool:
        """A recorded job transition; `on_live_route`: the job's route is dispatched or
        active (a draft's changes are the dispatcher's own work in progress)."""
        if not on_live_route:
            return False
        if t.to_state is JobState.FAILED:
            return self.request(f"stop {t.job_id} failed", now_ms)
        if t.to_state is JobState.CANCELLED:
            return self.request(f"job {t.job_id} cancelled", now_ms)
        return False

    def alert(self, alert: dict, live_vehicles, now_ms: int) -> bool:
        """An alert as published (`Alert.as_json`): an opened `offline` or `late_risk` one of a
        vehicle on a live route."""
        vehicle = alert.get("vehicle")
        if alert.get("state") != "open" or vehicle not in live_vehicles \
                or alert.get("rule") not in ("offline", "late_risk"):
            return False
        key = str(alert.get("id") or (alert.get("rule"), vehicle, alert.get("subject"),
                                      alert.get("start_ms")))
        if key in self._seen_alerts:  # a change of an open alert, not its opening
            return False
        self._seen_alerts[key] = None
        while len(self._seen_alerts) > MAX_SEEN_ALERTS:
            self._seen_alerts.pop(next(iter(self._seen_alerts)))
        if alert.get("rule") == "offline":
            return self.request(f"vehicle {vehicle} offline", now_ms, frozenset({vehicle}))
        if alert.get("rule") == "late_risk":
            late_min = round((alert.get("peak") or 0) / 60)
            return self.request(f"stop {alert.get('subject')} on {vehicle} late by "
                            f"~{late_min} min", now_ms)

    def take(self, now_ms: int) -> Replan | None:
        """The re-plan to run now, if one is due (it is then no longer pending)."""
        if self._due_ms is None or now_ms < self._due_ms:
            return None
        named = self._causes[:MAX_CAUSES]
        more = len(self._causes) - len(named)
        cause = "; ".join(named) + (f" (and {more} more)" if more else "")
        out = Replan(cause, frozenset(self._unavailable))
        self._causes, self._unavailable, self._due_ms = [], set(), None
        return out

    def retry(self, replan: Replan, now_ms: int) -> None:
        """The re-plan could not run (another plan running): pending again, `RETRY_MS` on."""
        for c in replan.cause.split("; "):
            if c not in self._causes:
                self._causes.append(c)
        self._unavailable |= replan.unavailable
        self._due_ms = max(self._due_ms or 0, now_ms + RETRY_MS)
