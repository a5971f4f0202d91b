"""Vehicle registration, tokens and revocation on every store (`any_store`)."""

from backend.store.base import AuthResult


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
