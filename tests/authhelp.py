"""Credentials for tests that call the HTTP API: a real user and API token in the store."""

from __future__ import annotations

import asyncio

from backend.auth import accounts
from backend.store import open_store

TEST_PASSWORD = "correct horse battery staple"


async def add_user_token(store, name: str = "tester", role: str = "admin",
                         password: str = TEST_PASSWORD) -> str:
    """Create `name` with `role` (if missing) and return a new API token of theirs."""
    if await store.user(name) is None:
        await accounts.add_user(store, name, role, password)
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
