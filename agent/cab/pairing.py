"""Pairing an in-cab tablet with the vehicle (docs/driver.md, "Pairing"): the rules, pure.

`Pairing` holds the one outstanding code and the attempt counters; it takes `now` (monotonic
seconds) and a source of randomness, and answers what the edge (agent/cab/server.py) should do:
hand out a token, refuse, or ask the client to wait. The paired devices themselves (the tokens'
hashes) live in the vehicle's SQLite file (agent/cab/devices.py); this object never sees them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

# Crockford's base32 without I, L, O, U: nothing to misread on a tablet's keyboard.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# 8 characters of 32: 40 bits. With MAX_FAILED guesses per code a guesser's chance is 5/2^40.
CODE_CHARS = 8
# Long enough to walk to the cab and type it, short enough that a code on a note is stale soon.
CODE_TTL_S = 600.0
# Wrong codes before the code is burnt: a typo or two, never a search.
MAX_FAILED = 5
# Attempts are at least this far apart, all clients together: no burst from a script.
ATTEMPT_SPACING_S = 1.0
# A device token: 256 random bits, URL-safe.
TOKEN_BYTES = 32
# Characters of a code as typed (with a dash or spaces), before normalising.
MAX_CODE_INPUT = 16


@dataclass(frozen=True)
class Paired:
    """The code was right: give the device this token (and keep only `token_hash`)."""
    token: str
    token_hash: str


@dataclass(frozen=True)
class Refused:
    """Wrong, expired or no code (403)."""
    reason: str


@dataclass(frozen=True)
class Wait:
    """Too fast, or the code is burnt (429 with Retry-After)."""
    reason: str
    retry_after_s: float


def token_hash(token: str) -> str:
    """What the vehicle keeps of a device token: its SHA-256 (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalise(code: str) -> str:
    """A code as typed ("abcd-efgh", "ABCD EFGH", o for 0) to its canonical form."""
    out = code.upper().replace("-", "").replace(" ", "")
    return out.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def shown(code: str) -> str:
    """The code as printed: two groups of four."""
    return f"{code[:4]}-{code[4:]}"


class Pairing:
    def __init__(self, randbytes: Callable[[int], bytes] = secrets.token_bytes):
        self._randbytes = randbytes
        self._code: str | None = None
        self._expires = 0.0
        self._failed = 0
        self._next_attempt = float("-inf")

    def issue(self, now: float) -> tuple[str, float]:
        """A new one-time code (replacing any earlier one): (code, seconds it is valid)."""
        raw = self._randbytes(CODE_CHARS)
        self._code = "".join(ALPHABET[b % len(ALPHABET)] for b in raw)
        self._expires = now + CODE_TTL_S
        self._failed = 0
        return self._code, CODE_TTL_S

    def outstanding(self, now: float) -> bool:
        return self._code is not None and now < self._expires

    def redeem(self, code: object, now: float) -> Paired | Refused | Wait:
        """One attempt at `code`. Right: the code is spent and a token made."""
        if now < self._next_attempt:
            return Wait("one attempt a second", self._next_attempt - now)
        self._next_attempt = now + ATTEMPT_SPACING_S
        if self._code is None or now >= self._expires:
            self._code = None
            return Refused("no pairing code is open: run `fleet-agent cab pair` on the vehicle")
        if not isinstance(code, str) or len(code) > MAX_CODE_INPUT:
            given = ""
        else:
            given = normalise(code)
        if not hmac.compare_digest(given.encode(), self._code.encode()):
            self._failed += 1
            if self._failed >= MAX_FAILED:
                self._code = None
                return Wait("too many wrong codes: this code is burnt, make a new one",
                            ATTEMPT_SPACING_S)
            return Refused("wrong code")
        self._code = None
        token = base64.urlsafe_b64encode(self._randbytes(TOKEN_BYTES)).rstrip(b"=").decode()
        return Paired(token, token_hash(token))

    def cancel(self) -> None:
        self._code = None


def csrf_token(token: str) -> str:
    """The CSRF header value of a device token (derived: nothing more to store)."""
    return hmac.new(token.encode(), b"cab csrf", hashlib.sha256).hexdigest()[:32]
