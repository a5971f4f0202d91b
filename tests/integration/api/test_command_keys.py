"""A command request repeated (a client's retry after a timeout, a 503 or a database
failover) stores the command once: `Idempotency-Key`, and the API's own retry with the same
key when the store fails for a reason that passes (backend/api/commands.py)."""

import pytest

from tests.integration.api.apphelp import Api

PATH = "/api/vehicles/v1/commands"


@pytest.fixture
async def api(store_url):
    async with Api(store_url) as api:
        await api.store.add_vehicle("v1")
        await api.store.add_vehicle("v2")
        yield api


async def test_the_same_key_names_the_first_command(api):
    key = {"Idempotency-Key": "ui-4f2a-1"}
    _, first = await api.call("POST", PATH, role="dispatcher", body={"name": "ping"},
                              headers=key, expect=202)
    _, again = await api.call("POST", PATH, role="dispatcher", body={"name": "ping"},
                              headers=key, expect=202)
    assert again["id"] == first["id"]
    _, other = await api.call("POST", "/api/vehicles/v2/commands", role="dispatcher",
                              body={"name": "ping"}, headers=key, expect=202)
    _, plain = await api.call("POST", PATH, role="dispatcher", body={"name": "ping"},
                              expect=202)
    assert len({first["id"], other["id"], plain["id"]}) == 3  # per vehicle; no key: new
    _, listed = await api.call("GET", PATH, expect=200)
    assert sorted(c["id"] for c in listed["commands"]) == sorted([first["id"], plain["id"]])
    await api.call("POST", PATH, role="dispatcher", body={"name": "ping"},
                   headers={"Idempotency-Key": "x" * 101}, expect=400)


async def test_committed_but_the_answer_lost_is_asked_again_not_stored_twice(api,
                                                                           monkeypatch):
    """The store commits, then the connection dies before the answer (as in a failover): the
    API asks again with the same key and gets the same command back."""
    monkeypatch.setattr("backend.api.commands.STORE_RETRY_EVERY_S", 0.01)
    real = api.store.add_command
    calls = []

    async def commit_then_lose_the_answer(*args, **kwargs):
        cid = await real(*args, **kwargs)
        calls.append(cid)
        if len(calls) == 1:
            raise ConnectionResetError("connection lost after commit")
        return cid

    monkeypatch.setattr(api.store, "add_command", commit_then_lose_the_answer)
    _, sent = await api.call("POST", PATH, role="dispatcher", body={"name": "ping"}, expect=202)
    assert calls == [sent["id"], sent["id"]]
    _, listed = await api.call("GET", PATH, expect=200)
    assert [c["id"] for c in listed["commands"]] == [sent["id"]]
