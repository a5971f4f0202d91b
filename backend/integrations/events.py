"""An inbound event (a webhook's body, or what a REST call asks), checked before anything is
done. Pure."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass

from ..dispatch import codec
from ..dispatch.model import Job

# A webhook body: a job is a few kilobytes; 256 KiB leaves room for long notes and refuses
# anything meant to cost memory.
MAX_EVENT_BYTES = 256 * 1024
# An event id / idempotency key: what senders use (UUIDs, ERP document numbers, ULIDs).
KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_REASON = 500
_FIELDS = {"id", "type", "job", "job_id", "reason"}


class EventType(enum.Enum):
    CREATE = "job.create"
    UPDATE = "job.update"
    CANCEL = "job.cancel"


@dataclass(frozen=True)
class InboundEvent:
    id: str  # the sender's event id: the idempotency key
    type: EventType
    job: Job | None = None  # create, update
    job_id: str = ""
    reason: str = ""


def parse_event(body: bytes) -> InboundEvent:
    """The event in `body`, or ValueError saying what is wrong (field first)."""
    if len(body) > MAX_EVENT_BYTES:
        raise ValueError(f"body: at most {MAX_EVENT_BYTES} bytes")
    try:
        d = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("body: not JSON") from None
    if not isinstance(d, dict):
        raise ValueError("body: a JSON object")
    unknown = sorted(set(d) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    eid = d.get("id")
    if not isinstance(eid, str) or not KEY_RE.fullmatch(eid):
        raise ValueError("id: the event's id, 1–128 of A-Z a-z 0-9 _ . : -")
    try:
        kind = EventType(d.get("type"))
    except ValueError:
        raise ValueError("type: one of " + ", ".join(t.value for t in EventType)) from None
    reason = d.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValueError(f"reason: text of at most {MAX_REASON} characters")
    if kind is EventType.CANCEL:
        if "job" in d:
            raise ValueError("job: not with job.cancel (name it in job_id)")
        jid = d.get("job_id")
        if not isinstance(jid, str) or not 0 < len(jid) <= 64:
            raise ValueError("job_id: the job to cancel")
        return InboundEvent(eid, kind, None, jid, reason)
    if "job_id" in d:
        raise ValueError("job_id: only with job.cancel (the job's id is in job)")
    if "job" not in d:
        raise ValueError(f"job: required with {kind.value}")
    try:
        job = codec.job_from_dict(d["job"])
    except ValueError as exc:
        raise ValueError(f"job.{exc}") from None
    return InboundEvent(eid, kind, job, job.id, reason)
