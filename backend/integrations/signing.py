"""Inbound webhook signatures (docs/customers.md, "Signed webhooks"). Pure: `now_s` is given.

The sender computes `HMAC-SHA256(secret, "<timestamp>.<raw body>")` in lowercase hex and
sends `X-Fleet-Timestamp: <unix seconds>` and `X-Fleet-Signature: v1=<hex>` (several
`v1=` values separated by commas while a secret is being rotated). A request is accepted only
within TOLERANCE_S of our clock, so a captured request cannot be replayed later (and within
the window the event id makes a replay change nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import re

TIMESTAMP_HEADER = "X-Fleet-Timestamp"
SIGNATURE_HEADER = "X-Fleet-Signature"
# Five minutes either way: clocks of other systems drift, and a replay is harmless inside it
# (the event id is an idempotency key).
TOLERANCE_S = 300
SCHEME = "v1"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURES_MAX = 5  # values in one header (rotation needs two)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts in X-Fleet-Signature."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes,
           now_s: float) -> str | None:
    """None if the request is signed with `secret` within the tolerance, else why not."""
    if timestamp is None or signature is None:
        return f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required"
    if not _TIMESTAMP.fullmatch(timestamp):
        return f"{TIMESTAMP_HEADER}: unix seconds"
    if abs(now_s - int(timestamp)) > TOLERANCE_S:
        return f"{TIMESTAMP_HEADER}: more than {TOLERANCE_S} s from our clock"
    want = sign(secret, int(timestamp), body)
    given = [v.strip() for v in signature.split(",")][:_SIGNATURES_MAX]
    if not any(hmac.compare_digest(want, g) for g in given if g.startswith(SCHEME + "=")):
        return "signature does not match"
    return None
