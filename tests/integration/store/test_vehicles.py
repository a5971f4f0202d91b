"""Vehicle registration, tokens and revocation on every store (`any_store`)."""

import asyncio

from backend.store.base import AuthResult
from backend.store.postgres import PostgresStore


async def test_vehicle_credentials(any_store):
    store = any_store
    token = await store.add_vehicle("v9")
    assert await store.authenticate("v9", token) is AuthResult.OK
    assert await store.authenticate("v9", token + "x") is AuthResult.UNKNOWN
    assert await store.revoke_vehicle("v9") is True
    assert await store.revoke_vehicle("v9") is False
    assert await store.authenticate("v9", token) is AuthResult.REVOKED
    assert await store.revoked_vehicles() == {"v9"}
    [v] = await store.list_vehicles()
    assert v["vehicle_id"] == "v9" and v["revoked_ms"] is not None


async def test_a_fleets_hellos_at_once_each_get_their_own_answer(any_store):
    """A storm's reconnects authenticate together: each hello its own verdict (on PostgreSQL
    from one shared query per round, backend/store/coalesce.py)."""
    store = any_store
    tokens = {f"v{i:02d}": await store.add_vehicle(f"v{i:02d}") for i in range(40)}
    await store.revoke_vehicle("v07")
    asks = [(v, t) for v, t in tokens.items()]
    asks += [("v03", tokens["v03"] + "x"), ("nobody", "t"), ("v05", tokens["v05"])]
    got = await asyncio.gather(*(store.authenticate(v, t) for v, t in asks))
    want = [AuthResult.REVOKED if v == "v07" else AuthResult.OK for v in tokens]
    want += [AuthResult.UNKNOWN, AuthResult.UNKNOWN, AuthResult.OK]
    assert got == want
    if isinstance(store, PostgresStore):  # the 43 hellos shared the queries
        assert store._credentials.rounds <= 2
