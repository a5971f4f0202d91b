"""A driver's action and how it is applied (pure: values, validation and the decision; the
store and the hub are in applier.py). docs/driver.md, "Actions".

An action (arrive, complete, fail, proof of delivery, message) is made on the device and may
reach the backend many times, late, through the app's HTTP queue or through the vehicle's
journal. It carries:

- `key`: the device's idempotency key. The same key is applied once; the same key with
  another body is refused (`KeyReused`, HTTP 409) and logged.
- `device_id` and `device_seq`: the device's own count of the actions it made (1, 2, 3 …),
  which is the order they were done in. The phone's clock (`done_ms`) is kept as information
  and as the transition's time, never used to order.

`decide` turns an action and what the store holds now into a `Decision`: applied (with the
job transition to record, or none) or a conflict kept with its reason (a stop re-planned to
another route or cancelled while the device was offline, a change the job machine refuses).
Nothing a driver did is dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from ..dispatch.jobstate import IllegalTransition, JobMachine
from ..dispatch.model import (
    ID_PATTERN,
    MAX_NAME_LEN,
    MAX_TEXT_LEN,
    Actor,
    ActorKind,
    JobRecord,
    JobState,
    Route,
    Transition,
)

KINDS = ("arrive", "complete", "fail", "pod", "message")
# what each kind asks of the job's state (pod and message change no state)
TARGET = {"arrive": JobState.ARRIVED, "complete": JobState.COMPLETED, "fail": JobState.FAILED}
# Idempotency keys and device ids: long enough for a UUID or 128 random bits in hex, short
# enough to index; printable ASCII without spaces (they appear in logs and URLs).
KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{8,64}")
# A device's count of its actions: a phone making one action a second for a century stays
# below this (and JavaScript numbers are exact up to 2**53).
MAX_DEVICE_SEQ = 2**53 - 1
# Photos one proof of delivery names: a parcel, where it was left, the damage; more is an
# album, not a proof.
MAX_POD_PHOTOS = 4
# A message's text: a few paragraphs typed on a phone.
MAX_MESSAGE_LEN = 2_000
# A failure's reason: a sentence (the app offers the usual ones).
MAX_REASON_LEN = 200
# How far back the phone's time of an action is believed: a shift plus a night offline. An
# older (or future) clock is clamped to this window, never used as it is.
MAX_OFFLINE_MS = 36 * 3600 * 1000
# File ids of proof-of-delivery images: "f" + 40 hex digits (images.file_id)
FILE_ID_RE = re.compile(r"f[0-9a-f]{40}")
FIELDS = frozenset({"key", "device_id", "device_seq", "kind", "job_id", "route_id", "done_ms",
                    "reason", "pod", "text"})
POD_FIELDS = frozenset({"recipient", "notes", "signature", "photos"})


class ActionRefused(ValueError):
    """An action that is not one (a missing field, a wrong type, a size over its limit)."""


class KeyReused(Exception):
    """The key (or the device's sequence number) was used before for another action."""


@dataclass(frozen=True)
class Pod:
    """Proof of delivery: who took it, notes, and the stored images it names (file ids of
    images.py, uploaded first)."""

    recipient: str = ""
    notes: str = ""
    signature: str | None = None
    photos: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"recipient": self.recipient, "notes": self.notes, "signature": self.signature,
                "photos": list(self.photos)}

    @property
    def files(self) -> tuple[str, ...]:
        return ((self.signature,) if self.signature else ()) + self.photos


@dataclass(frozen=True)
class DriverAction:
    key: str
    device_id: str
    device_seq: int
    kind: str
    job_id: str | None = None
    route_id: str | None = None
    done_ms: int | None = None  # the phone's clock: information, never the order
    reason: str = ""
    pod: Pod | None = None
    text: str = ""

    def to_dict(self) -> dict:
        """The action as stored and as the key binds it (canonical: sorted, no defaults
        dropped, so the same action always gives the same digest)."""
        return {"key": self.key, "device_id": self.device_id, "device_seq": self.device_seq,
                "kind": self.kind, "job_id": self.job_id, "route_id": self.route_id,
                "done_ms": self.done_ms, "reason": self.reason,
                "pod": None if self.pod is None else self.pod.to_dict(), "text": self.text}

    def digest(self) -> str:
        body = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def transition_id(self) -> str:
        """The job transition's id: derived from the key, so applying twice records once."""
        return "d" + hashlib.sha256(f"driver-action\0{self.key}".encode()).hexdigest()[:31]


def _text(d: dict, name: str, limit: int) -> str:
    v = d.get(name, "")
    if v is None:
        return ""
    if not isinstance(v, str) or len(v) > limit:
        raise ActionRefused(f"{name}: text of at most {limit} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in v):
        raise ActionRefused(f"{name}: no control characters")
    return v


def _id(d: dict, name: str, required: bool) -> str | None:
    v = d.get(name)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not ID_PATTERN.match(v) or v.endswith("\n"):
        raise ActionRefused(f"{name}: 1–64 of A-Z a-z 0-9 _ . -")
    return v


def _int(d: dict, name: str, lo: int, hi: int, required: bool) -> int | None:
    v = d.get(name)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ActionRefused(f"{name}: a whole number from {lo} to {hi}")
    return v


def _pod(v) -> Pod | None:
    if v is None:
        return None
    if not isinstance(v, dict) or not set(v) <= POD_FIELDS:
        raise ActionRefused(f"pod: an object of {', '.join(sorted(POD_FIELDS))}")
    sig = v.get("signature")
    if sig is not None and (not isinstance(sig, str) or not FILE_ID_RE.fullmatch(sig)):
        raise ActionRefused("pod.signature: a file id from POST /api/driver/files")
    photos = v.get("photos") or []
    if not isinstance(photos, list) or len(photos) > MAX_POD_PHOTOS or not all(
            isinstance(p, str) and FILE_ID_RE.fullmatch(p) for p in photos):
        raise ActionRefused(f"pod.photos: at most {MAX_POD_PHOTOS} file ids from "
                            "POST /api/driver/files")
    if len(set(photos)) != len(photos):
        raise ActionRefused("pod.photos: a photo appears twice")
    return Pod(_text(v, "recipient", MAX_NAME_LEN), _text(v, "notes", MAX_TEXT_LEN), sig,
               tuple(photos))


def parse_action(d: object) -> DriverAction:
    """An action from JSON (hostile until here): ActionRefused saying which field is wrong."""
    if not isinstance(d, dict):
        raise ActionRefused("an action is a JSON object")
    unknown = set(d) - FIELDS
    if unknown:
        raise ActionRefused(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    for name in ("key", "device_id"):
        if not isinstance(d.get(name), str) or not KEY_RE.fullmatch(d[name]):
            raise ActionRefused(f"{name}: 8–64 of A-Z a-z 0-9 _ . : -")
    kind = d.get("kind")
    if kind not in KINDS:
        raise ActionRefused(f"kind: one of {', '.join(KINDS)}")
    a = DriverAction(
        key=d["key"], device_id=d["device_id"],
        device_seq=_int(d, "device_seq", 1, MAX_DEVICE_SEQ, True),
        kind=kind, job_id=_id(d, "job_id", kind != "message"),
        route_id=_id(d, "route_id", kind != "message"),
        done_ms=_int(d, "done_ms", 0, 2**53 - 1, False),
        reason=_text(d, "reason", MAX_REASON_LEN), pod=_pod(d.get("pod")),
        text=_text(d, "text", MAX_MESSAGE_LEN))
    if kind == "fail" and not a.reason.strip():
        raise ActionRefused("reason: a failed stop says why")
    if kind == "message" and not a.text.strip():
        raise ActionRefused("text: a message says something")
    if kind == "pod" and a.pod is None:
        raise ActionRefused("pod: required for a proof of delivery")
    if a.pod is not None and kind not in ("complete", "pod", "fail"):
        raise ActionRefused("pod: only with complete, fail or pod")
    return a


@dataclass(frozen=True)
class Decision:
    """What applying an action does: `outcome` "applied" or "conflict" (kept, shown to the
    dispatcher and the driver, nothing changed), `detail` a sentence, `transition` the job
    change to record (None: no state change)."""

    outcome: str
    detail: str = ""
    transition: Transition | None = None

    @property
    def conflict(self) -> bool:
        return self.outcome == "conflict"


def driver_actor(driver_id: str) -> Actor:
    return Actor(ActorKind.PERSON, f"driver:{driver_id}")


def action_time(done_ms: int | None, now_ms: int) -> int:
    """The transition's time: the phone's, clamped to [now − MAX_OFFLINE_MS, now]."""
    if done_ms is None:
        return now_ms
    return min(now_ms, max(now_ms - MAX_OFFLINE_MS, done_ms))


def decide(action: DriverAction, driver_id: str, now_ms: int, *, last_seq: int | None,
           job: JobRecord | None, route: Route | None,
           history: list[Transition]) -> Decision:
    """Apply `action` of `driver_id` on what the store holds now: the device's last applied
    sequence number, the job, the route the action names and the job's history."""
    if last_seq is not None and action.device_seq <= last_seq:
        return Decision("conflict", f"done before action {last_seq} of this device but "
                        "received after it: not applied out of order")
    if action.kind == "message":
        return Decision("applied")
    if route is None or route.driver_id != driver_id:
        return Decision("conflict", f"route {action.route_id} is no longer this driver's")
    if job is None:
        return Decision("conflict", f"stop {action.job_id} no longer exists")
    if job.state is JobState.CANCELLED:
        return Decision("conflict", f"stop {action.job_id} was cancelled by dispatch")
    if job.route_id != action.route_id:
        where = f"route {job.route_id}" if job.route_id else "no route"
        return Decision("conflict", f"stop {action.job_id} was re-planned to {where}")
    to = TARGET.get(action.kind)
    if to is None:  # proof of delivery on its own: attached, no state change
        return Decision("applied", "proof of delivery attached")
    machine = JobMachine(job.job.id, history)
    try:
        t = machine.request(to, driver_actor(driver_id), now_ms, action.transition_id,
                            at_ms=action_time(action.done_ms, now_ms),
                            route_id=action.route_id, reason=action.reason)
    except IllegalTransition as exc:
        return Decision("conflict", str(exc))
    if t is None:
        return Decision("applied", f"stop {action.job_id} was already {to.value}")
    return Decision("applied", "", t)
