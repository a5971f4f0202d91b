"""The notifier with real stores and a loopback webhook receiver: events become outbox rows,
failed deliveries are retried with backoff until every event arrived, signatures verify by the
documentation's recipe, and with two nodes on one PostgreSQL each event goes out once."""

from __future__ import annotations

import asyncio
import json

from backend.notify.service import Notifier, channels_of
from backend.notify.settings import NotifySettings
from backend.notify.subscriptions import body_of, parse_subscription
from backend.store import open_store

from .helpers import FakeClock, dispatch_jobs, verify_webhook
from .receiver import Receiver

SETTINGS = NotifySettings.parse({"allow_networks": ["127.0.0.0/8"]})
MAX_ROUNDS = 40  # every loop below is bounded


async def subscribe(store, target: str, owner="ann", **extra) -> tuple[int, str]:
    body = {"events": ["job.dispatched", "alert"], "channel": "webhook", "target": target,
            **extra}
    sub = parse_subscription(body, owner, SETTINGS.policy)
    secret = "whsec_test-secret"
    return await store.add_subscription(owner, sub.group, body_of(sub), secret, 1), secret


async def test_failed_deliveries_are_retried_until_every_event_arrived(any_store):
    store, clock = any_store, FakeClock()
    await store.add_user("ann", "admin", "x", all_vehicles=True)
    await store.add_user("bob", "viewer", "x")  # sees no vehicle: gets nothing
    receiver = await Receiver(fail_first=3).start()
    notifier = Notifier(store, SETTINGS, channels_of(SETTINGS), clock=clock, retry_min_s=1)
    try:
        sub, secret = await subscribe(store, receiver.url)
        await subscribe(store, receiver.url.replace("/hook", "/bob"), owner="bob")
        await dispatch_jobs(store, ["a", "b", "c"], "r1", "van-1", clock())
        for _ in range(MAX_ROUNDS):
            await notifier.tick()
            if len({r.headers["X-Fleet-Event-Id"] for r in receiver.requests
                    if r.path == "/hook" and len(receiver.requests) > 3}) == 3:
                break
            clock.advance(5)
        log = await store.delivery_log(sub, 100)
    finally:
        await notifier.stop()
        await receiver.stop()
    assert not [r for r in receiver.requests if r.path == "/bob"]
    got = {}
    for r in receiver.requests[3:]:
        assert verify_webhook(secret, r.headers["X-Fleet-Signature"], r.body, clock() // 1000)
        event = json.loads(r.body)
        assert event["id"] == r.headers["X-Fleet-Event-Id"]
        got[event["id"]] = event
    assert sorted(e["job"] for e in got.values()) == ["a", "b", "c"]
    assert {e["type"] for e in got.values()} == {"job.dispatched"}
    assert {e["vehicle"] for e in got.values()} == {"van-1"}
    assert sum(1 for x in log if not x["ok"]) == 3 and sum(x["ok"] for x in log) == 3
    assert "HTTP 503" in log[-1]["detail"]
    # a forged or replayed request does not verify
    r = receiver.requests[-1]
    assert not verify_webhook("whsec_other", r.headers["X-Fleet-Signature"], r.body,
                              clock() // 1000)
    assert not verify_webhook(secret, r.headers["X-Fleet-Signature"], r.body + b" ",
                              clock() // 1000)
    assert not verify_webhook(secret, r.headers["X-Fleet-Signature"], r.body,
                              clock() // 1000 + 301)


async def test_a_destination_the_guard_refuses_is_given_up_at_once(any_store):
    store, clock = any_store, FakeClock()
    await store.add_user("ann", "admin", "x", all_vehicles=True)
    receiver = await Receiver().start()
    strict = NotifySettings.parse({})  # no allowed networks: loopback refused
    notifier = Notifier(store, strict, channels_of(strict), clock=clock)
    try:
        sub, _ = await subscribe(store, receiver.url)  # checked against the test's allowance
        await dispatch_jobs(store, ["a"], "r1", "van-1", clock())
        await notifier.tick()
        log = await store.delivery_log(sub, 10)
        assert await store.due_notifications(clock() + 10**9, 10) == []  # given up at once
    finally:
        await notifier.stop()
        await receiver.stop()
    assert receiver.requests == []
    assert [x["state"] for x in log] == ["failed"] and "loopback" in log[0]["detail"]


async def test_two_nodes_on_one_postgresql_deliver_each_event_once(_pg_url):
    clock = FakeClock()
    a, b = open_store(_pg_url), open_store(_pg_url)
    await a.open()
    await b.open()
    receiver = await Receiver().start()
    nodes = [Notifier(s, SETTINGS, channels_of(SETTINGS), node=n, clock=clock)
             for s, n in ((a, "node-a"), (b, "node-b"))]
    try:
        await a.add_user("ann", "admin", "x", all_vehicles=True)
        await subscribe(a, receiver.url)
        await dispatch_jobs(a, [f"j{i}" for i in range(10)], "r1", "van-1", clock())
        for _ in range(3):
            await asyncio.gather(*(n.tick() for n in nodes))
            clock.advance(1)
        ids = [r.headers["X-Fleet-Event-Id"] for r in receiver.requests]
        assert len(ids) == 10 and len(set(ids)) == 10  # once each, no duplicate
        assert sorted(n.leader for n in nodes) == [False, True]
        # the leader goes silent: after its lease ran out the other takes over the new events
        other = next(n for n in nodes if not n.leader)
        await dispatch_jobs(b, ["k1", "k2"], "r2", "van-2", clock())
        await other.tick()
        assert len(receiver.requests) == 10  # not yet: the leader's lease holds
        clock.advance(16)
        await other.tick()
        assert other.leader
        ids = [r.headers["X-Fleet-Event-Id"] for r in receiver.requests]
        assert len(ids) == 12 and len(set(ids)) == 12
    finally:
        for n in nodes:
            await n.stop()
        await receiver.stop()
        await a.close()
        await b.close()


async def test_quiet_hours_hold_and_a_digest_collects_on_a_fake_clock(any_store):
    """Through the notifier and the outbox, on a fake clock (UTC 05:46): a subscription quiet
    05:00-07:00 gets its events one by one at 07:00, an hourly digest gets one message at
    06:00 with both events, each keeping its id; nothing before."""
    store, clock = any_store, FakeClock()  # 2025-12-06 05:46:40 UTC
    await store.add_user("ann", "admin", "x", all_vehicles=True)
    receiver = await Receiver().start()
    notifier = Notifier(store, SETTINGS, channels_of(SETTINGS), clock=clock)
    try:
        await subscribe(store, receiver.url.replace("/hook", "/quiet"),
                        quiet={"from": "05:00", "to": "07:00"})
        _, secret = await subscribe(store, receiver.url.replace("/hook", "/digest"),
                                    digest="hourly")
        await dispatch_jobs(store, ["a", "b"], "r1", "van-1", clock())
        await notifier.tick()
        clock.advance(13 * 60 + 19)  # 05:59:59
        await notifier.tick()
        assert receiver.requests == []
        clock.advance(1)  # 06:00: the digest, not the quiet one
        await notifier.tick()
        [digest] = receiver.requests
        assert digest.path == "/digest"
        assert verify_webhook(secret, digest.headers["X-Fleet-Signature"], digest.body,
                              clock() // 1000)
        body = json.loads(digest.body)
        assert body["type"] == "digest" and body["id"].startswith("digest.")
        assert sorted(e["id"] for e in body["events"]) == ["job.as-r1-a", "job.as-r1-b"]
        clock.advance(3600 - 1)  # 06:59:59: still quiet
        await notifier.tick()
        assert len(receiver.requests) == 1
        clock.advance(1)  # 07:00
        await notifier.tick()
        quiet = [r for r in receiver.requests if r.path == "/quiet"]
        assert sorted(r.headers["X-Fleet-Event-Id"] for r in quiet) == \
            ["job.as-r1-a", "job.as-r1-b"]
        await notifier.tick()
        assert len(receiver.requests) == 3  # each delivered once
    finally:
        await notifier.stop()
        await receiver.stop()
