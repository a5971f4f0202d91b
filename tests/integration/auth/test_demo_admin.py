"""The demo's first admin: created with a generated password on the first start, the same
login printed on the next, and it really logs in (Argon2 check against the store)."""

from __future__ import annotations

import asyncio
import stat

from backend.auth.passwords import verify_password
from backend.auth.policy import password_problem
from backend.store import open_store
from hil.demo import DEMO_ADMIN, _provision


def test_demo_creates_and_keeps_its_admin(tmp_path):
    db, pw_file = f"sqlite://{tmp_path / 'fleet.db'}", tmp_path / "admin-password"
    tokens, first = asyncio.run(_provision(db, ["truck-1"], pw_file))
    assert set(tokens) == {"truck-1"} and len(first) >= 20
    assert password_problem(first, DEMO_ADMIN) is None  # the first login need not change it
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    _, again = asyncio.run(_provision(db, ["truck-1"], pw_file))
    assert again == first
    pw_file.unlink()  # lost: a new password is generated and set
    _, third = asyncio.run(_provision(db, ["truck-1"], pw_file))
    assert third != first

    async def stored():
        store = open_store(db)
        await store.open()
        try:
            return await store.user(DEMO_ADMIN)
        finally:
            await store.close()

    user = asyncio.run(stored())
    assert user["role"] == "admin"
    assert verify_password(user["password_hash"], third)
    assert not verify_password(user["password_hash"], first)
