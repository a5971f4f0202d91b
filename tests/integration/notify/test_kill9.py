"""The promise end to end, with the real backend process: a webhook receiver on loopback that
fails its first answers, and is unreachable while the backend is killed with -9 and restarted,
still ends with every event, exactly once after deduplication by id, each signature verified
by the documentation's recipe (tests/integration/notify/helpers.py)."""

from __future__ import annotations

import asyncio
import time

from backend.notify.settings import NotifySettings
from backend.notify.subscriptions import body_of, parse_subscription
from backend.store import open_store
from tests.conftest import wait_for

from .helpers import FakeClock, HookReceiver, dispatch_jobs

SECRET = "whsec_kill9-test"


def run(coro_fn):
    async def go():
        store = open_store(db_url)
        await store.open()
        try:
            return await coro_fn(store)
        finally:
            await store.close()
    return asyncio.run(go())


db_url = ""


def test_kill9_and_an_unreachable_receiver_lose_and_duplicate_nothing(procs, tmp_path):
    global db_url
    db_url = f"sqlite://{procs.db_path}"
    clock = FakeClock(int(time.time() * 1000))
    receiver = HookReceiver(SECRET, fail_first=3)
    url = f"http://127.0.0.1:{receiver.port}/hook"
    settings = NotifySettings.parse({"allow_networks": ["127.0.0.0/8"]})

    async def setup(store):
        await store.add_user("ann", "admin", "x", all_vehicles=True)
        sub = parse_subscription({"events": ["job.dispatched"], "channel": "webhook",
                                  "target": url}, "ann", settings.policy)
        await store.add_subscription("ann", None, body_of(sub), SECRET, clock())
        await dispatch_jobs(store, [f"a{i}" for i in range(10)], "ra", "van-1", clock())

    run(setup)
    config = tmp_path / "backend.toml"
    config.write_text('[notify]\nallow_networks = ["127.0.0.0/8"]\npoll_s = 0.2\n'
                      'retry_min_s = 0.2\n')
    backend = procs.backend("--config", str(config))
    try:
        wait_for(lambda: len(receiver.ids()) >= 5 and len(receiver.seen) > 5, 30,
                 "the first deliveries (after three refusals)")
        backend.kill9()
        receiver.stop()  # unreachable from here on
        run(lambda store: dispatch_jobs(store, [f"b{i}" for i in range(10)], "rb", "van-1",
                                        clock()))
        backend = procs.backend("--config", str(config))

        async def refused(store):
            [sub] = await store.subscriptions()
            return [x for x in await store.delivery_log(sub["id"], 200)
                    if "unreachable" in x["detail"]]

        wait_for(lambda: run(refused), 30, "deliveries failing while the receiver is away")
        receiver = HookReceiver(SECRET, 0, receiver.port, receiver.seen)  # back, same address
        wanted = {f"job.as-ra-a{i}" for i in range(10)} | {f"job.as-rb-b{i}" for i in range(10)}
        wait_for(lambda: receiver.ids() >= wanted, 60, "every event at the receiver")
        assert all(ok for _, ok in receiver.seen), "a signature did not verify"
        assert receiver.ids() == wanted  # nothing else, and each once after deduplication
    finally:
        backend.stop()
        receiver.stop()
