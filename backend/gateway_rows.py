"""A received batch's readings judged and turned into rows, in one pass (sans-IO).

`validate_batch` is the gateway's one look at a batch's content: each reading's content
checked against its kind and the gateway's time window (docs/protocol.md §4), the valid ones
as the rows the writer stores (a valid position, most of what vehicles send, read once for
its check and its row: `geostream.schema.position_values`), the invalid ones as dead letters
(answered invalid-reading, stored apart and acknowledged, so the agent never re-sends them),
and whether a valid row is a driver action. The connection (backend/gateway_conn.py) does
the I/O around it.
"""

from __future__ import annotations

from collections.abc import Callable

from geostream.image_parts import PartRefused, is_part, parse_part
from geostream.messages import Batch
from geostream.schema import (
    ACTION,
    KIND,
    POSITION,
    SEQ,
    TIME,
    Invalid,
    TimeWindow,
    content_problem,
    json_safe,
    position_values,
)

from .store.rows import DeadLetter, StoredReading, made_position


def validate_batch(batch: Batch, vehicle: str, now_ms: int, window: TimeWindow, images: bool,
                   invalid: Callable[[str], None]) -> tuple[list[StoredReading],
                                                            list[DeadLetter], bool]:
    """(rows to store, dead letters, whether a valid row is a driver action) of `batch`, as
    received by `vehicle`'s session at `now_ms`; `images`: image parts (revision 4) are
    checked here; `invalid(rule)` is told of each reading refused."""
    good: list[StoredReading] = []
    dead: list[DeadLetter] = []
    actions = False
    epoch = batch.epoch
    low, high = window.min_ms, now_ms + window.max_ahead_ms
    for r in batch.readings:
        ts = r[TIME]
        if (r[KIND] == POSITION and low <= ts <= high
                and (values := position_values(r)) is not None):  # most readings: one look
            good.append(made_position(vehicle, epoch, r[SEQ], ts, values, now_ms))
            continue
        problem = content_problem(r, now_ms, window)
        if r[KIND] == ACTION:
            if problem is None and images and is_part(r.get("action")):
                problem = _part_problem(r["action"])
            actions = actions or problem is None
        if problem is None:
            good.append(StoredReading.from_wire(vehicle, epoch, r, now_ms))
        else:
            invalid(problem.rule)
            dead.append(DeadLetter(vehicle, epoch, r["q"], json_safe(r), problem.detail, now_ms))
    return good, dead, actions


def _part_problem(action: dict) -> Invalid | None:
    """An image part checked at the edge (docs/protocol.md §4 "Images"): every field, to the
    byte, before anything is held."""
    try:
        parse_part(action)
    except PartRefused as exc:
        return Invalid("image", str(exc))
    return None
