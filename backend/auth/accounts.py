"""Account operations shared by the `users` CLI and the admin routes (no I/O of their own
beyond the store they are given)."""

from __future__ import annotations

import asyncio
import re

from ..authz import Role
from .passwords import generate_password, hash_password, hash_token, new_token
from .policy import check_password

# User and group names: letters, digits and . _ @ - ; they appear in URLs and logs.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # whole names: use fullmatch
MAX_LABEL = 64


def check_name(name: object, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"{what} must be 1..64 of letters, digits and . _ @ - "
                         "(starting with a letter or digit)")
    return name


async def hash_off_loop(password: str) -> str:
    """Argon2 takes ~50 ms of CPU: off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)


async def add_user(store, name: str, role: str, password: str | None = None,
                   all_vehicles: bool = False) -> str | None:
    """Create a user; returns the generated password (None if `password` was given). Unless
    `all_vehicles`, a user that is not an admin sees only the vehicles of its groups."""
    check_name(name, "user name")
    Role.parse(role)
    if password is not None:
        check_password(password, name)
    generated = generate_password() if password is None else None
    await store.add_user(name, role.lower(), await hash_off_loop(password or generated),
                         all_vehicles=all_vehicles)
    return generated


async def set_password(store, name: str, password: str | None = None) -> str | None:
    """Replace a password (ends the user's sessions); returns the generated one if none given.
    KeyError if there is no such user; ValueError if the policy refuses `password`."""
    if password is not None:
        check_password(password, name)
    generated = generate_password() if password is None else None
    if not await store.update_user(name, password_hash=await hash_off_loop(password or generated)):
        raise KeyError(name)
    return generated


async def add_token(store, name: str, label: str) -> tuple[int, str]:
    """(id, token) of a new API token for the user; the token is shown once, stored hashed.
    KeyError if there is no such user."""
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise ValueError(f"label must be text of at most {MAX_LABEL}")
    token = new_token()
    token_id = await store.add_api_token(name, label, hash_token(token))
    if token_id is None:
        raise KeyError(name)
    return token_id, token
