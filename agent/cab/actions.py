"""A driver's action from the in-cab tablet (docs/driver.md, "The in-cab tablet"), pure: the
check at the edge, its digest, the body that goes into the journal, and the local decision
against what the vehicle recorded (new, a re-send, or a key used for another action).

The backend's applier (backend/driver/) is the judge of everything else; the agent keeps only
what it needs to answer the tablet as the backend would and to write each action once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

# The same rules as the backend's (backend/driver/actions.py), which the agent does not ship.
KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{8,64}")
MAX_DEVICE_SEQ = 2**53 - 1
# A kind's name: the backend knows five; anything else is its to refuse (kept as a conflict).
MAX_KIND_CHARS = 32
# An action as the app sends it: a message of 2,000 characters, escaped, with room to spare.
MAX_ACTION_BYTES = 16384
# How deep an action's JSON may nest (the app's deepest: action → pod → photos).
MAX_DEPTH = 4


class NotAnAction(ValueError):
    """400: the body is not an action."""


class KeyUsed(Exception):
    """409: the key, or the device's sequence number, was used for another action."""


@dataclass(frozen=True)
class Checked:
    key: str
    device_id: str
    device_seq: int
    kind: str
    job_id: str | None
    digest: str
    journaled: dict  # what goes into the journal as the act reading's action


def _depth(value, level: int = 1) -> int:
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level


def check(body: object) -> Checked:
    """The action as sent by the app, or NotAnAction."""
    if not isinstance(body, dict):
        raise NotAnAction("an action is a JSON object")
    if _depth(body) > MAX_DEPTH:
        raise NotAnAction(f"an action nests at most {MAX_DEPTH} deep")
    key, device, seq, kind = (body.get(k) for k in ("key", "device_id", "device_seq", "kind"))
    for name, value in (("key", key), ("device_id", device)):
        if not isinstance(value, str) or not KEY_RE.fullmatch(value):
            raise NotAnAction(f"{name}: 8-64 of A-Z a-z 0-9 _ . : -")
    if type(seq) is not int or not 1 <= seq <= MAX_DEVICE_SEQ:
        raise NotAnAction("device_seq: an integer from 1")
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KIND_CHARS:
        raise NotAnAction(f"kind: text of at most {MAX_KIND_CHARS} characters")
    job = body.get("job_id")
    if job is not None and not isinstance(job, str):
        raise NotAnAction("job_id: text")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    # the images named (pod.photos, pod.signature) travel before it as image parts
    # (docs/protocol.md §4 "Images"): the action keeps their ids
    return Checked(key, device, seq, kind, job, digest, dict(body))


def named_images(body: dict) -> list[str]:
    """The image ids an action's proof of delivery names (pod.photos, pod.signature): the
    cab journals an action only once it keeps (has journaled) each of them."""
    pod = body.get("pod")
    if not isinstance(pod, dict):
        return []
    photos = pod.get("photos")
    ids = [p for p in photos if isinstance(p, str)] if isinstance(photos, list) else []
    if isinstance(pod.get("signature"), str):
        ids.append(pod["signature"])
    return ids


def decide(action: Checked, recorded: dict | None) -> bool:
    """True: new, journal it. False: a re-send of the recorded one. KeyUsed otherwise."""
    if recorded is None:
        return True
    if recorded["key"] != action.key:
        raise KeyUsed(f"device {action.device_id} sequence {action.device_seq} was used by "
                      "another action")
    if recorded["digest"] != action.digest or recorded["device_id"] != action.device_id \
            or recorded["device_seq"] != action.device_seq:
        raise KeyUsed(f"key {action.key} was used for another action")
    return False
