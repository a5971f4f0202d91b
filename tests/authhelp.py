"""Credentials for tests that call the HTTP API: a real user and API token in the store."""

from __future__ import annotations

import asyncio
import functools

from backend.auth import accounts
from backend.auth.passwords import hash_password
from backend.store import open_store

TEST_PASSWORD = "correct horse battery staple"


@functools.cache
def _hash(password: str) -> str:
    return hash_password(password)  # Argon2 costs ~0.1-1 s: once per password per session


async def add_user_token(store, name: str = "tester", role: str = "admin",
                         password: str = TEST_PASSWORD, all_vehicles: bool = True) -> str:
    """Create `name` with `role` (if missing; by default seeing every vehicle) and return a new
    API token of theirs."""
    if await store.user(name) is None:
        await store.add_user(name, role, _hash(password), all_vehicles=all_vehicles)
    _, token = await accounts.add_token(store, name, "tests")
    return token


def api_token(db_url: str, name: str = "tester", role: str = "admin") -> str:
    """`add_user_token` on the store at `db_url`, from synchronous test code."""
    async def go() -> str:
        store = open_store(db_url)
        await store.open()
        try:
            return await add_user_token(store, name, role)
        finally:
            await store.close()

    return asyncio.run(go())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
