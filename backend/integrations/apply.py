"""What an inbound event does, through the dispatch service (so the hub, the job machine and
re-planning see it as any other change): create a job, replace a not-yet-started job's
contents, or cancel a job — a cancellation of a job on a route asks for a re-plan proposal.
Answers (status, JSON) as the REST API would."""

from __future__ import annotations

import hashlib

from ..dispatch import codec
from ..dispatch.jobstate import IllegalTransition
from ..dispatch.model import Actor, ActorKind, JobState
from ..dispatch.service import DispatchError
from ..dispatch.storage import JobExists, StaleState
from .events import EventType, InboundEvent


def actor(source: str) -> Actor:
    """Who an integration's changes are recorded as: the sending system, standing for the
    person behind it (a cancellation from an ERP is a person's decision upstream)."""
    return Actor(ActorKind.PERSON, f"integration:{source}"[:64])


def transition_id(source: str, event_id: str) -> str:
    """The cancellation's transition id, derived from the event: doing it twice records it
    once."""
    return "i" + hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()[:24]


async def apply_event(dispatch, store, source: str, ev: InboundEvent,
                      now_ms: int) -> tuple[int, dict]:
    if ev.type is EventType.CREATE:
        try:
            new = await dispatch.add_jobs([ev.job], now_ms)
        except JobExists as exc:
            return 409, {"error": str(exc), "ids": exc.ids}
        rec = await store.job(ev.job_id)
        return (201 if new else 200), codec.record_to_dict(rec)
    if ev.type is EventType.UPDATE:
        try:
            rec = await dispatch.update_job(ev.job, now_ms)
        except DispatchError as exc:
            return exc.status, {"error": str(exc)}
        return 200, codec.record_to_dict(rec)
    before = await store.job(ev.job_id)
    if before is None:
        return 404, {"error": f"unknown job {ev.job_id!r}"}
    reason = ev.reason or f"cancelled by the {source} integration"
    try:
        t = await dispatch.change_state(ev.job_id, JobState.CANCELLED, actor(source), now_ms,
                                        transition_id(source, ev.id), reason=reason)
    except (IllegalTransition, StaleState, DispatchError) as exc:
        return 409, {"error": str(exc)}
    if t is not None and before.route_id is not None:
        dispatch.request_replan(f"job {ev.job_id} cancelled by the {source} integration")
    rec = await store.job(ev.job_id)
    return 200, {"job": codec.record_to_dict(rec),
                 "transition": None if t is None else codec.transition_to_dict(t)}
