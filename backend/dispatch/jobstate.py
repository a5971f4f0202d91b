"""A job's state machine: requested changes (people, the planner) and detected visits (the
arrival detector), each a recorded `Transition`, with the precedence rules of
docs/dispatch.md. Pure: the caller passes `now_ms` and stores what it returns.

Precedence:
1. An explicit action by a person wins over detection: once a person has set the state,
   detection changes nothing about it (a person may confirm a detected arrival; from then on
   the arrival is theirs).
2. Late readings never undo what a person did: a backfill that retracts an arrival or a
   departure only corrects transitions that detection made.
3. Announced transitions are corrected, not rewritten: a detected arrival or completion that a
   backfill moves or retracts gets a new transition whose `corrects` names the old one; the
   old one stays in the history (a notification or customer link built on it can be amended).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .model import Actor, ActorKind, JobState, Transition

S = JobState
# Which changes are allowed (corrections of detection use their own paths, see `detected`).
ALLOWED: dict[JobState, frozenset[JobState]] = {
    S.UNASSIGNED: frozenset({S.ASSIGNED, S.CANCELLED}),
    S.ASSIGNED: frozenset({S.UNASSIGNED, S.EN_ROUTE, S.ARRIVED, S.COMPLETED, S.FAILED,
                           S.SKIPPED, S.CANCELLED}),
    S.EN_ROUTE: frozenset({S.ASSIGNED, S.UNASSIGNED, S.ARRIVED, S.COMPLETED, S.FAILED,
                           S.SKIPPED}),
    S.ARRIVED: frozenset({S.COMPLETED, S.FAILED, S.SKIPPED}),
    # a dispatcher may put a failed or skipped job back in the queue; completed and cancelled
    # are final
    S.FAILED: frozenset({S.UNASSIGNED}),
    S.SKIPPED: frozenset({S.UNASSIGNED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}
# A person may re-state these to take them over from detection (precedence rule 1).
CONFIRMABLE = frozenset({S.ARRIVED, S.COMPLETED})
# Who detection acts as on the backend.
DETECTOR = Actor(ActorKind.RULE, "arrival-detector")


class IllegalTransition(ValueError):
    """A change the machine does not allow from the job's state (the message says why)."""


@dataclass(frozen=True)
class Visit:
    """What detection says about one stop: the first arrival and the departure after it
    (None: not detected), each (at_ms, lat, lon)."""

    arrived: tuple[int, float, float] | None = None
    departed: tuple[int, float, float] | None = None


def transition_id(job_id: str, to: JobState, at_ms: int, by: Actor, basis: str | None) -> str:
    """A deterministic id for a transition the backend derives itself, so deriving it twice
    from the same history (a re-delivered batch, a second backend, a restart) records it
    once. `basis` names what it follows (the job's previous transition): the same arrival
    announced again after a retraction is a new transition, not the first one repeated."""
    h = hashlib.sha256(f"{job_id}\0{to.value}\0{at_ms}\0{by}\0{basis or ''}".encode())
    return "t" + h.hexdigest()[:31]


class JobMachine:
    """One job: its current state from its recorded history, and the transitions to record."""

    def __init__(self, job_id: str, history: Iterable[Transition] = ()):
        self.job_id = job_id
        self.history = list(history)  # in the order recorded

    @property
    def state(self) -> JobState:
        return self.history[-1].to_state if self.history else JobState.UNASSIGNED

    @property
    def last(self) -> Transition | None:
        return self.history[-1] if self.history else None

    def _by_person(self) -> bool:
        """Whether a person set the current state (then detection leaves it alone)."""
        return self.last is not None and self.last.by.kind is ActorKind.PERSON

    def _record(self, t: Transition) -> Transition:
        self.history.append(t)
        return t

    def request(self, to: JobState, by: Actor, now_ms: int, tid: str,
                at_ms: int | None = None, route_id: str | None = None,
                lat: float | None = None, lon: float | None = None,
                reason: str = "") -> Transition | None:
        """A change asked for by a person or the planner. Returns the transition to record,
        the one already recorded under `tid` (a repeated request), or None when a person asks
        for the state the job is already in by a person (nothing to record). Raises
        IllegalTransition for a change the machine does not allow."""
        for t in self.history:
            if t.id == tid:
                return t
        cur = self.state
        if to is cur:
            if not (by.kind is ActorKind.PERSON and to in CONFIRMABLE and not self._by_person()):
                return None  # already so; a person confirming detection takes it over
        elif to not in ALLOWED[cur]:
            raise IllegalTransition(f"job {self.job_id}: cannot go from {cur.value} to "
                                    f"{to.value}")
        return self._record(Transition(
            tid, self.job_id, cur, to, now_ms if at_ms is None else at_ms, by, now_ms,
            route_id if route_id is not None else (self.last.route_id if self.last else None),
            lat, lon, reason))

    # --- detection ------------------------------------------------------------------------

    def _by_vehicle(self) -> bool:
        """Whether the vehicle's own detector made the current state (docs/dispatch.md,
        "Detection on the vehicle": then the backend's detector leaves the job to it)."""
        return self.last is not None and self.last.by.kind is ActorKind.VEHICLE

    def reported(self, kind: str, at: tuple[int, float, float], by: Actor, basis: str,
                 now_ms: int, route_id: str | None = None,
                 complete_on_departure: bool = True) -> list[Transition]:
        """An arrival or departure the vehicle's detector decided (`kind` "arrival" or
        "departure", `at` = (at_ms, lat, lon), `basis` its idempotency key): the transition
        to record, if any. The first detection recorded wins: an arrival reported for a job
        that already arrived (the backend's detector, a person, or this report before) or a
        departure for one no longer arrived records nothing; a person's arrival is never
        completed by detection; final states stay."""
        to = S.ARRIVED if kind == "arrival" else S.COMPLETED
        tid = transition_id(self.job_id, to, at[0], by, basis)
        if any(t.id == tid for t in self.history):
            return []
        if kind == "arrival" and self.state in (S.ASSIGNED, S.EN_ROUTE):
            reason = "detected on the vehicle"
        elif (kind == "departure" and complete_on_departure and self.state is S.ARRIVED
              and not self._by_person()):
            reason = "departure detected on the vehicle"
        else:
            return []
        return [self._record(Transition(tid, self.job_id, self.state, to, at[0], by, now_ms,
                                        route_id, at[1], at[2], reason))]

    def detected(self, visit: Visit, now_ms: int, by: Actor = DETECTOR,
                 route_id: str | None = None,
                 complete_on_departure: bool = True) -> list[Transition]:
        """Reconcile the job with what detection now says about its stop (computed from every
        reading so far, in device-time order): the transitions to record, usually none.

        Arrival moves an assigned or en-route job to arrived; departure after it completes the
        job (if `complete_on_departure`). A backfill that moves either gives a correcting
        transition at the new time; one that retracts it steps the job back. States a person
        set, and final states, are left as they are."""
        out: list[Transition] = []
        if self.state in (S.FAILED, S.SKIPPED, S.CANCELLED, S.UNASSIGNED) or (
                self._by_person() and self.state not in (S.ASSIGNED, S.EN_ROUTE)):
            return out  # final, or a person's arrival or completion: theirs
        if by.kind is not ActorKind.VEHICLE and self._by_vehicle():
            return out  # the vehicle's detector reported this visit: its own, not corrected
        # undo or move what detection did and no longer holds (newest first)
        if self.state is S.COMPLETED:
            done = self.last
            want = visit.departed if complete_on_departure else None
            if want is not None and visit.arrived is not None:
                if want[0] != done.at_ms:
                    out.append(self._correct(done, S.COMPLETED, now_ms, by, route_id,
                                             "departure time corrected by later readings",
                                             want))
                return out
            arr = self._arrival()
            out.append(self._correct(done, S.ARRIVED, now_ms, by, route_id,
                                     "departure not confirmed by later readings",
                                     visit.arrived or (arr.at_ms, arr.lat, arr.lon)))
        if self.state is S.ARRIVED:
            arr = self._arrival()
            if visit.arrived is None:
                out.append(self._correct(arr, self._before_arrival(), now_ms, by,
                                         route_id, "arrival not confirmed by later readings"))
                return out
            if visit.arrived[0] != arr.at_ms:
                out.append(self._correct(arr, S.ARRIVED, now_ms, by, route_id,
                                         "arrival time corrected by later readings",
                                         visit.arrived))
        if self.state in (S.ASSIGNED, S.EN_ROUTE) and visit.arrived is not None:
            at, lat, lon = visit.arrived
            out.append(self._record(Transition(
                transition_id(self.job_id, S.ARRIVED, at, by, self._basis()), self.job_id,
                self.state, S.ARRIVED, at, by, now_ms, route_id, lat, lon, "detected")))
        if self.state is S.ARRIVED and complete_on_departure and visit.departed is not None:
            at, lat, lon = visit.departed
            out.append(self._record(Transition(
                transition_id(self.job_id, S.COMPLETED, at, by, self._basis()), self.job_id,
                S.ARRIVED, S.COMPLETED, at, by, now_ms, route_id, lat, lon,
                "departure detected")))
        return out

    def _arrival(self) -> Transition | None:
        """The transition that made the job arrived (the newest into ARRIVED)."""
        for t in reversed(self.history):
            if t.to_state is S.ARRIVED:
                return t
        return None

    def _basis(self) -> str | None:
        return self.last.id if self.last else None

    def _before_arrival(self) -> JobState:
        """The state the job was in before it (last) arrived: where a retracted arrival
        returns it (assigned or en route)."""
        for t in reversed(self.history):
            if t.to_state not in (S.ARRIVED, S.COMPLETED):
                return t.to_state
        return S.ASSIGNED

    def _correct(self, old: Transition, to: JobState, now_ms: int, by: Actor,
                 route_id: str | None, reason: str,
                 where: tuple[int, float, float] | None = None) -> Transition:
        at, lat, lon = where if where is not None else (now_ms, None, None)
        if at is None:
            at = now_ms
        return self._record(Transition(
            transition_id(self.job_id, to, at, by, old.id), self.job_id, self.state, to, at,
            by, now_ms, route_id or old.route_id, lat, lon, reason, corrects=old.id))
