"""A tracking link: what is stored (only the token's hash), and whether it still answers.
Pure: every decision takes `now_ms`."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass

from ..dispatch.model import JobState

# The token's random bytes: 192 bits, so guessing one among millions of live links is
# hopeless even at the rate limit's full speed for years.
TOKEN_BYTES = 24
# What a token looks like (URL-safe base64 of TOKEN_BYTES): anything else is refused before
# the store is asked.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32}")
# How long a link keeps answering after its job is done, unless the request says otherwise:
# the customer can still look at the proof of delivery the next day.
DEFAULT_GRACE_S = 24 * 3600
# The longest grace a dispatcher may give: a month covers a disputed delivery.
MAX_GRACE_S = 30 * 24 * 3600
# No link lives longer than this after it was made, whatever its job does: a forgotten link
# to a job that never finishes stops answering.
MAX_LIFETIME_MS = 90 * 24 * 3600 * 1000
# Live links per job: a dispatcher may re-send (a new token) a few times, not without end.
MAX_LINKS_PER_JOB = 20
# A job's states after which the grace period runs.
FINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.SKIPPED, JobState.CANCELLED})


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the store keeps: the token itself is shown once (URL, QR code, e-mail)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_link_id() -> str:
    """The link's public handle in the dispatchers' API (revoking, listing): not the token."""
    return "lnk_" + secrets.token_hex(8)


@dataclass(frozen=True)
class TrackingLink:
    id: str
    token_hash: str
    job_id: str
    created_ms: int
    created_by: str
    grace_s: int = DEFAULT_GRACE_S
    expires_ms: int | None = None  # a fixed end the dispatcher chose, or None
    revoked_ms: int | None = None

    def __post_init__(self):
        g = self.grace_s
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= MAX_GRACE_S:
            raise ValueError(f"grace_s: whole seconds from 0 to {MAX_GRACE_S}, not {g!r}")
        e = self.expires_ms
        if e is not None and (isinstance(e, bool) or not isinstance(e, int)
                              or not self.created_ms < e <= self.created_ms + MAX_LIFETIME_MS):
            raise ValueError("expires_ms: after now and at most 90 days ahead")

    def as_dict(self) -> dict:
        """The dispatchers' view of a link (never the token nor its hash)."""
        return {"id": self.id, "job_id": self.job_id, "created_ms": self.created_ms,
                "created_by": self.created_by, "grace_s": self.grace_s,
                "expires_ms": self.expires_ms, "revoked_ms": self.revoked_ms}


class LinkState(enum.Enum):
    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"


def link_state(link: TrackingLink, job_state: JobState | None, final_at_ms: int | None,
               now_ms: int) -> LinkState:
    """Whether the link answers now. `final_at_ms`: when the job reached its final state (its
    row's last change), used only while `job_state` is final. A deleted job expires it."""
    if link.revoked_ms is not None:
        return LinkState.REVOKED
    if job_state is None or now_ms >= link.created_ms + MAX_LIFETIME_MS:
        return LinkState.EXPIRED
    if link.expires_ms is not None and now_ms >= link.expires_ms:
        return LinkState.EXPIRED
    if job_state in FINAL and final_at_ms is not None \
            and now_ms >= final_at_ms + link.grace_s * 1000:
        return LinkState.EXPIRED
    return LinkState.LIVE


def live_until_ms(link: TrackingLink, job_state: JobState, final_at_ms: int | None) -> int:
    """When the link stops answering if nothing changes (shown to the customer)."""
    ends = [link.created_ms + MAX_LIFETIME_MS]
    if link.expires_ms is not None:
        ends.append(link.expires_ms)
    if job_state in FINAL and final_at_ms is not None:
        ends.append(final_at_ms + link.grace_s * 1000)
    return min(ends)
