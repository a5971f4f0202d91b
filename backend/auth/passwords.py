"""Password hashing (Argon2id via argon2-cffi), generated passwords, API and session tokens.

Passwords are stored only as Argon2id PHC strings (argon2-cffi's RFC 9106 low-memory profile);
tokens (API tokens, session cookies) are 256-bit random values stored as SHA-256 digests, as
vehicle tokens are: a digest of a random 256-bit value needs no slow hash.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..store.base import hash_token, new_token

__all__ = ["hash_password", "verify_password", "needs_rehash", "generate_password",
           "new_token", "hash_token", "csrf_for"]

_HASHER = PasswordHasher()  # Argon2id, t=3, m=64 MiB, p=4 (RFC 9106 second recommendation)


@functools.cache
def _dummy() -> str:
    """Verified against when the user does not exist, so an unknown name costs the same time.

    Made on the first verification, whoever's, not at import: one Argon2id hash (64 MiB) is
    0.25 s on a 2-core host and several seconds in an emulated VM, paid by every backend
    command that never checks a password (migrate, gen-certs, vehicles add, the service).
    """
    return _HASHER.hash(secrets.token_urlsafe(16))

# Longest password accepted: Argon2 hashes any length, but a megabyte of input is a cheap DoS.
MAX_PASSWORD = 1024
GENERATED_PASSWORD_BYTES = 15  # 120 bits, 20 URL-safe characters


def hash_password(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD:
        raise ValueError(f"a password has 1..{MAX_PASSWORD} characters")
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True if `password` matches; with no stored hash, spends the same time and says False."""
    dummy = _dummy()  # before the branch: the first call costs the same for any name
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _HASHER.verify(stored_hash or dummy, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _HASHER.check_needs_rehash(stored_hash)


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def csrf_for(session_token: str) -> str:
    """The session's CSRF token: derived from the cookie's secret value, so nothing more is
    stored, and only a page that was given it (by login or /api/me) can send it."""
    return hmac.new(session_token.encode(), b"fleet-csrf", hashlib.sha256).hexdigest()

