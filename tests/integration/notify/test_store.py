"""The notification tables on both stores: enqueueing is idempotent and moves its cursor in
the same transaction, finishing logs every attempt, the lease has one holder at a time."""

from __future__ import annotations


async def _subscription(store, owner="ann") -> int:
    return await store.add_subscription(owner, None, {"events": ["job.completed"],
                                                      "channel": "webhook",
                                                      "target": "https://x.test/h"},
                                        "whsec_k", 1000)


async def test_enqueue_is_idempotent_and_moves_the_cursor(any_store):
    s = any_store
    sub = await _subscription(s)
    rows = [(sub, "job.t1", {"id": "job.t1"}, 5000), (sub, "job.t2", {"id": "job.t2"}, 6000)]
    assert await s.enqueue_notifications(rows, 1000, ("job_transitions", 7)) == 2
    assert await s.enqueue_notifications(rows, 2000, ("job_transitions", 5)) == 0
    assert await s.notify_cursor("job_transitions") == 7  # never backwards
    assert await s.notify_cursor("alerts") == 0
    # a row of a deleted subscription is not added
    assert await s.enqueue_notifications([(sub + 99, "job.t3", {}, 0)], 1000) == 0
    assert [r["event_id"] for r in await s.due_notifications(5500, 10)] == ["job.t1"]
    assert len(await s.due_notifications(6000, 10)) == 2


async def test_finish_logs_attempts_and_settles_rows(any_store):
    s = any_store
    sub = await _subscription(s)
    await s.enqueue_notifications([(sub, f"e{i}", {"id": f"e{i}"}, 0) for i in range(3)], 0)
    ids = {r["event_id"]: r["id"] for r in await s.due_notifications(0, 10)}
    await s.finish_notifications([(ids["e0"], True, "HTTP 204", None),
                                  (ids["e1"], False, "HTTP 503", 9000),
                                  (ids["e2"], False, "refused", None)], 100)
    assert [r["event_id"] for r in await s.due_notifications(8999, 10)] == []
    again = await s.due_notifications(9000, 10)
    assert [(r["event_id"], r["attempts"]) for r in again] == [("e1", 1)]
    # finishing a row that is no longer pending changes nothing and logs nothing
    await s.finish_notifications([(ids["e0"], False, "late", 1)], 200)
    log = await s.delivery_log(sub, 10)
    assert [(x["event_id"], x["ok"], x["state"]) for x in log] == [
        ("e2", False, "failed"), ("e1", False, "pending"), ("e0", True, "delivered")]
    assert await s.delete_subscription(sub)
    assert await s.delivery_log(sub, 10) == [] and await s.due_notifications(10**12, 10) == []


async def test_the_lease_has_one_holder_until_it_expires(any_store):
    s = any_store
    assert await s.take_lease("notify", "a", 1000, 500)
    assert not await s.take_lease("notify", "b", 1200, 500)
    assert await s.take_lease("notify", "a", 1400, 500)  # renewed to 1900
    assert not await s.take_lease("notify", "b", 1899, 500)
    assert await s.take_lease("notify", "b", 1900, 500)
    assert not await s.take_lease("notify", "a", 2000, 500)
    await s.release_lease("notify", "a")  # not the holder: nothing
    assert not await s.take_lease("notify", "a", 2000, 500)
    await s.release_lease("notify", "b")
    assert await s.take_lease("notify", "a", 2000, 500)


async def test_subscriptions_by_owner(any_store):
    s = any_store
    a = await _subscription(s, "ann")
    await _subscription(s, "bob")
    mine = await s.subscriptions("ann")
    assert [x["id"] for x in mine] == [a] and mine[0]["body"]["channel"] == "webhook"
    assert mine[0]["secret"] == "whsec_k" and mine[0]["group"] is None
    assert len(await s.subscriptions()) == 2
    assert (await s.subscription(a))["owner"] == "ann" and await s.subscription(a + 99) is None
