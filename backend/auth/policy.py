"""Which passwords are accepted (sans-IO): long enough, and not one of the most common ones.

NIST SP 800-63B's rules, without composition rules: at least `MIN_PASSWORD` characters, at most
`MAX_PASSWORD`, not the user's own name, and not on the shipped list of the 30,000 most common
passwords (backend/auth/data/common-passwords.txt, where it came from is in its header) —
compared lower-cased, and again with the digits and punctuation around it taken off, so
"Password2024!" counts as "password". Generated passwords (20 random URL-safe characters)
always pass.
"""

from __future__ import annotations

import functools
import string
from pathlib import Path

from .passwords import MAX_PASSWORD

# Shorter passwords fall to offline guessing of a leaked hash within days even under Argon2id;
# 12 is the length the current OWASP and NCSC guidance asks of human-chosen passwords.
MIN_PASSWORD = 12
COMMON_FILE = Path(__file__).parent / "data" / "common-passwords.txt"
_DECORATION = string.digits + string.punctuation + string.whitespace


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(w for w in lines if w and not w.startswith("#"))


def password_problem(password: object, user: str | None = None) -> str | None:
    """Why `password` may not be used (one sentence for the user), or None if it may."""
    if not isinstance(password, str):
        return "the password must be text"
    if len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"the password must have at most {MAX_PASSWORD} characters"
    lowered = password.lower()
    if user and user.lower() in (lowered, lowered.strip(_DECORATION)):
        return "the password must not be the user name"
    common = common_passwords()
    if lowered in common or lowered.strip(_DECORATION) in common:
        return "the password is among the most common ones: choose another"
    return None


def check_password(password: object, user: str | None = None) -> str:
    """`password` if acceptable, else ValueError saying why."""
    problem = password_problem(password, user)
    if problem is not None:
        raise ValueError(problem)
    return password  # type: ignore[return-value]
