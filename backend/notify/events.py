"""Notification events (pure): what a job transition, an alert or an ETA change becomes, with
its stable id (docs/notifications.md, "Events"). The same source row gives the same event id
on every node and after every restart, so receivers deduplicate by it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..dispatch.model import JobState, Transition
from ..store.rows import StoredAlert

# Job events a subscription can ask for, by the state a transition enters.
JOB_EVENTS = {
    JobState.ASSIGNED: "job.dispatched",
    JobState.EN_ROUTE: "job.en_route",
    JobState.ARRIVED: "job.arrived",
    JobState.COMPLETED: "job.completed",
    JobState.FAILED: "job.failed",
    JobState.SKIPPED: "job.skipped",
    JobState.CANCELLED: "job.cancelled",
}
ETA_CHANGED = "job.eta_changed"
LATE_RISK = "job.late_risk"  # the live ETAs' `late_risk` alert (backend/dispatch/live_eta.py)
ALERT = "alert"
DIGEST = "digest"
EVENT_TYPES = (*JOB_EVENTS.values(), ETA_CHANGED, LATE_RISK, ALERT)
LATE_RISK_RULE = "late_risk"


@dataclass(frozen=True)
class Event:
    """One thing that happened. `id` is stable (see the module); `vehicle` decides who may
    see it (None: a job on no vehicle's route, seen by those who see every vehicle)."""

    id: str
    type: str
    time_ms: int
    vehicle: str | None = None
    job: str | None = None
    route: str | None = None
    rule: str | None = None
    data: dict = field(default_factory=dict)
    known_ms: int = 0  # when the backend learnt it: older than a subscription, not sent to it

    def as_json(self) -> dict:
        """The event as receivers get it (docs/notifications.md)."""
        out = {"id": self.id, "type": self.type, "time_ms": self.time_ms,
               "vehicle": self.vehicle, "job": self.job, "route": self.route}
        if self.rule is not None:
            out["rule"] = self.rule
        out["data"] = self.data
        return out


def from_transition(t: Transition, vehicle: str | None) -> Event | None:
    """A job transition's event (None for a state nobody subscribes to)."""
    kind = JOB_EVENTS.get(t.to_state)
    if kind is None:
        return None
    data = {"from": t.from_state.value, "to": t.to_state.value, "by": t.by.kind.value}
    if t.reason:
        data["reason"] = t.reason
    if t.corrects:
        data["corrects"] = t.corrects
    return Event(f"job.{t.id}", kind, t.at_ms, vehicle, t.job_id, t.route_id, data=data,
                 known_ms=t.recorded_ms)


def from_alert(a: StoredAlert) -> Event | None:
    """A stored alert's event (None for one a backfill retracted). A late-risk alert is the
    job event `job.late_risk` (its subject is the job)."""
    if a.state == "retracted":
        return None
    data = {"state": a.state, "subject": a.subject or None, "start_ms": a.start_ms,
            "end_ms": a.end_ms, "peak": a.peak, "lat": a.lat, "lon": a.lon,
            "detail": a.detail}
    if a.rule == LATE_RISK_RULE:
        return Event(f"alert.{a.id}", LATE_RISK, a.start_ms, a.vehicle_id, a.subject or None,
                     rule=a.rule, data=data, known_ms=a.decided_ms)
    return Event(f"alert.{a.id}", ALERT, a.start_ms, a.vehicle_id, rule=a.rule, data=data,
                 known_ms=a.decided_ms)


def eta_changed(job: str, route: str | None, vehicle: str, eta_ms: int, before_ms: int,
                now_ms: int) -> Event:
    """An ETA that moved from `before_ms` (the last one told) to `eta_ms`. The id names the
    new ETA to the minute: the same change seen twice is one event."""
    minutes = round((eta_ms - before_ms) / 60_000, 1)
    return Event(f"eta.{job}.{eta_ms // 60_000}", ETA_CHANGED, now_ms, vehicle, job, route,
                 data={"eta_ms": eta_ms, "previous_eta_ms": before_ms,
                       "change_min": minutes}, known_ms=now_ms)
