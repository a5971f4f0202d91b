"""Dead letters of vehicle actions (pure): when an `act` reading the backend cannot apply is
set aside instead of being asked for again forever. docs/operations.md "Dead letters of
vehicle actions"; the edge is backend/vehicle_actions.py, the rows backend/store/*/
action_letters.py.

A failure of the database is transient: the batch is not acknowledged and the agent sends it
again, however often (nothing is lost, nothing is counted). Any other failure of the backend's
own code on one action (a bug, an action it can never apply) counts: the same error on the
same reading (the same type of exception at the same place) DEAD_AFTER_FAILURES times in a
row makes it a dead letter, which is acknowledged so the vehicle's journal moves on, and kept
with its error until an admin replays it. A refusal by rule (an image that is no image, a
proof naming images the backend does not have) needs no repetition: a dead letter at once.
"""

from __future__ import annotations

import os
import re
import traceback

from geostream.schema import json_safe

# Identical failures of one action before it is set aside. A bug fails the same way every
# time; five tries span the agent's reconnect backoff (0.5 s, reset at each welcome) a few
# times over, so a misjudged passing failure has had its chances, while one bad action holds
# its vehicle's later readings back for seconds, not forever.
DEAD_AFTER_FAILURES = 5
# The error text kept (and shown): a traceback's last line, not a novel.
MAX_ERROR_CHARS = 500
STATES = ("failing", "dead", "replayed", "refused")
# Causes followed to the failure's origin (`raise … from exc` chains are one or two deep).
MAX_CAUSES = 8
_TYPE = re.compile(r"[A-Za-z_][\w.]*")
_PLACE = " [at "


def where(exc: BaseException) -> str:
    """Where a failure arose: the innermost frame (file name and line) of the exception it
    was caused by, "" if unknown."""
    root = exc
    for _ in range(MAX_CAUSES):
        if root.__cause__ is None:
            break
        root = root.__cause__
    frames = traceback.extract_tb(root.__traceback__)
    return f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""


def describe(exc: BaseException) -> str:
    """An exception as a letter keeps it: its type, message and place, bounded."""
    place = where(exc)
    suffix = f"{_PLACE}{place}]" if place else ""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS - len(suffix)] + suffix


def same_failure(a: str, b: str) -> bool:
    """Two described failures are the same one if they are of the same type at the same
    place: the message may hold what differs between tries of one bug (an address, a time,
    an id). Without a place, the whole text must match."""
    return _signature(a) == _signature(b)


def _signature(text: str) -> str:
    if _PLACE not in text:
        return text
    kind = _TYPE.match(text)
    return f"{kind.group() if kind else ''}@{text.rsplit(_PLACE, 1)[1]}"


def new_letter(vehicle: str, epoch: int, seq: int, taken_ms: int, action: dict,
               now_ms: int) -> dict:
    """The row of a reading that failed for the first time (state set by the caller); the
    action as every store's JSON takes it (the `act` envelope allows only plain values, so
    for an action that passed it this changes nothing)."""
    return {"vehicle_id": vehicle, "epoch": epoch, "seq": seq,
            "key": str(action.get("key", ""))[:64], "kind": str(action.get("kind", ""))[:64],
            "action": json_safe(action), "taken_ms": taken_ms, "state": "failing", "error": "",
            "failures": 0, "first_ms": now_ms, "last_ms": now_ms, "replayed_ms": None,
            "outcome": None}


def failed(letter: dict, error: str, now_ms: int,
           dead_after: int = DEAD_AFTER_FAILURES) -> dict:
    """The letter after one more failure: identical ones count up to `dead_after` (then
    `dead`), another error starts the count again. A dead (or refused) letter stays so."""
    if letter["state"] in ("dead", "refused"):
        return letter
    same = letter["state"] == "failing" and same_failure(letter["error"], error)
    failures = letter["failures"] + 1 if same else 1
    return letter | {"error": error[:MAX_ERROR_CHARS], "failures": failures, "last_ms": now_ms,
                     "state": "dead" if failures >= dead_after else "failing"}


def refused(letter: dict, why: str, now_ms: int, replayable: bool = True) -> dict:
    """The letter of a refusal by rule: dead at once (replayable once what it needs is
    there), or `refused` (never: an image the backend cannot take)."""
    return letter | {"error": why[:MAX_ERROR_CHARS], "failures": letter["failures"] + 1,
                     "last_ms": now_ms, "state": "dead" if replayable else "refused"}


def replayed(letter: dict, outcome: str, now_ms: int) -> dict:
    return letter | {"state": "replayed", "replayed_ms": now_ms, "outcome": outcome[:200]}
