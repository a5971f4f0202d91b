"""Webhook signatures (backend/integrations/signing.py) against an HMAC computed here as the
documentation says, on given times."""

from __future__ import annotations

import hashlib
import hmac

from backend.integrations.signing import TOLERANCE_S, verify

BODY = b'{"id":"e1","type":"job.cancel","job_id":"o1"}'
NOW = 1_790_000_000


def _doc_signature(secret: str, ts: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), f"{ts}.".encode() + body,
                            hashlib.sha256).hexdigest()


def test_accepts_the_documented_signature_within_the_tolerance():
    sig = _doc_signature("s3cret", NOW, BODY)
    assert verify("s3cret", str(NOW), sig, BODY, NOW + TOLERANCE_S) is None
    assert verify("s3cret", str(NOW), f"v1=00, {sig}", BODY, NOW) is None  # rotation
    assert "more than" in verify("s3cret", str(NOW), sig, BODY, NOW + TOLERANCE_S + 1)


def test_refuses_anything_else():
    sig = _doc_signature("s3cret", NOW, BODY)
    assert verify("other", str(NOW), sig, BODY, NOW) == "signature does not match"
    assert verify("s3cret", str(NOW), sig, BODY + b" ", NOW) == "signature does not match"
    assert verify("s3cret", str(NOW + 1), sig, BODY, NOW) == "signature does not match"
    assert verify("s3cret", str(NOW), sig.replace("v1=", "v0="), BODY, NOW) is not None
    assert verify("s3cret", None, sig, BODY, NOW) is not None
    assert verify("s3cret", "12.5", sig, BODY, NOW) is not None
