"""What both stores' link tables share: columns, row conversion, the idempotency claim's
outcomes. No I/O (the SQL lives in the store packages)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .model import TrackingLink

LINK_COLUMNS = ("id, token_hash, job_id, created_ms, created_by, grace_s, expires_ms, "
                "revoked_ms")


def link_row(link: TrackingLink) -> tuple:
    return (link.id, link.token_hash, link.job_id, link.created_ms, link.created_by,
            link.grace_s, link.expires_ms, link.revoked_ms)


def link_from_row(r) -> TrackingLink:
    return TrackingLink(r[0], r[1], r[2], int(r[3]), r[4], int(r[5]),
                        None if r[6] is None else int(r[6]),
                        None if r[7] is None else int(r[7]))


class Claim(enum.Enum):
    NEW = "new"  # first time: do it, then finish_request (or drop_request on a refusal)
    REPLAY = "replay"  # done before with the same request: answer what was answered
    MISMATCH = "mismatch"  # the key was used for another request: 409
    BUSY = "busy"  # the same request is being done right now (another node, a retry): 409


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    status: int = 0
    response: str = ""
