"""The egress guard on real sockets: loopback receivers are reached only through the admin's
allow-list; a name that rebinds to loopback after it was checked is refused when connecting;
redirects are not followed; the synchronous edge (what Apprise runs in) obeys the same rule."""

from __future__ import annotations

import asyncio

import pytest
import requests

from backend.notify.egress import EgressClient, EgressPolicy, EgressRefused, guarded

from .receiver import Receiver

LOOPBACK_ALLOWED = EgressPolicy.from_config(["127.0.0.0/8"])


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_loopback_receiver_is_reached_only_when_allowed(receiver):
    allowed = EgressClient(LOOPBACK_ALLOWED)
    refusing = EgressClient(EgressPolicy())
    try:
        answer = await allowed.post(receiver.url, b"{}", {"content-type": "application/json"})
        assert answer.status == 204 and len(receiver.requests) == 1
        with pytest.raises(EgressRefused, match="127.0.0.1 is a loopback"):
            await refusing.post(receiver.url, b"{}", {})
        named = receiver.url.replace("127.0.0.1", "localhost")
        with pytest.raises(EgressRefused, match="localhost: .* loopback"):
            await refusing.post(named, b"{}", {})
    finally:
        await allowed.close()
        await refusing.close()
    assert len(receiver.requests) == 1  # the refusals sent nothing


async def test_a_rebinding_name_is_refused_on_the_address_connected_to(receiver):
    """The stand-in for a DNS server that answers a public address first (the check at
    subscription time) and loopback afterwards (the attack)."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    client = EgressClient(EgressPolicy(), resolve=rebinding)
    try:
        first = await client._resolver.resolve("hooks.attacker.test", receiver.port)
        assert [r["host"] for r in first] == ["93.184.216.34"]
        url = f"http://hooks.attacker.test:{receiver.port}/hook"
        with pytest.raises(EgressRefused, match="hooks.attacker.test: 127.0.0.1 is a loopback"):
            await client.post(url, b"{}", {})
    finally:
        await client.close()
    assert receiver.requests == []


async def test_a_name_with_public_and_private_answers_connects_only_to_an_allowed_one(receiver):
    async def mixed(host: str, port: int) -> list[str]:
        return ["10.0.0.7", "127.0.0.1"]

    client = EgressClient(LOOPBACK_ALLOWED, resolve=mixed)
    try:
        answer = await client.post(f"http://mixed.test:{receiver.port}/hook", b"x", {})
    finally:
        await client.close()
    assert answer.status == 204 and receiver.requests[0].body == b"x"


async def test_redirects_are_answers_not_new_destinations(receiver):
    target = await Receiver().start()
    receiver.redirect_to = target.url
    client = EgressClient(LOOPBACK_ALLOWED)
    try:
        answer = await client.post(receiver.url, b"{}", {})
    finally:
        await client.close()
        await target.stop()
    assert answer.status == 302 and target.requests == []


async def test_the_synchronous_edge_obeys_the_same_rule(receiver):
    target = await Receiver().start()
    receiver.redirect_to = target.url

    def post(policy: EgressPolicy) -> int:
        with guarded(policy):
            return requests.post(receiver.url, data=b"{}", timeout=5).status_code

    try:
        with pytest.raises(requests.ConnectionError, match="loopback"):
            await asyncio.to_thread(post, EgressPolicy())
        assert receiver.requests == []
        assert await asyncio.to_thread(post, LOOPBACK_ALLOWED) == 302
        assert len(receiver.requests) == 1 and target.requests == []  # not followed
        # outside guarded() nothing changes for the rest of the process
        resp = await asyncio.to_thread(requests.post, receiver.url, data=b"{}", timeout=5)
        assert resp.status_code == 204 and len(target.requests) == 1
    finally:
        await target.stop()
