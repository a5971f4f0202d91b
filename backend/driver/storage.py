"""What both stores' driver tables share (sql/*/0019_driver.sql): the row shapes, the errors
and the shift rules. No I/O (the SQL lives in the store packages)."""

from __future__ import annotations

import json

# Route statuses a driver's shift is on: what the driver sees, and what says who drove.
SHIFT_STATUSES = ("dispatched", "active", "done")
# A driver sees the route of a shift from this long before its start to this long after its
# end: loading the van before, the paperwork after.
SHIFT_MARGIN_MS = 2 * 3600 * 1000
# Rows per listing page (actions, messages).
MAX_PAGE = 500
ACTION_COLUMNS = ("seq", "key", "digest", "device_id", "device_seq", "driver_id", "kind",
                  "job_id", "route_id", "vehicle_id", "body", "outcome", "detail",
                  "transition_id", "received_ms", "via")
MESSAGE_COLUMNS = ("seq", "id", "vehicle_id", "driver_id", "direction", "author", "text",
                   "sent_ms")


class SeqTaken(Exception):
    """The device's sequence number was used by another action (another key)."""


def driver_link(driver_id: str, body: str | dict) -> dict:
    """What an account needs to know of the drivers row that links it."""
    b = json.loads(body) if isinstance(body, str) else body
    return {"id": driver_id, "active": bool(b.get("active", True))}


def action_from_row(r) -> dict:
    """A stored action as the API answers it (`body`: the action as sent)."""
    d = dict(zip(ACTION_COLUMNS, r, strict=True))
    d["body"] = json.loads(d["body"]) if isinstance(d["body"], str) else d["body"]
    return d


def message_from_row(r) -> dict:
    return dict(zip(MESSAGE_COLUMNS, r, strict=True))
