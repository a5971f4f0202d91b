"""Webhook signatures (pure): HMAC-SHA256 over the timestamp and the body, the header every
webhook carries (docs/notifications.md, "Verifying a webhook" says how a receiver checks it)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Fleet-Signature"
EVENT_ID_HEADER = "X-Fleet-Event-Id"
# 256-bit secrets, shown once when the subscription is made (as API tokens are).
SECRET_BYTES = 32


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(SECRET_BYTES)


def signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """The header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"t={timestamp_s},v1={mac.hexdigest()}"
