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


class SlowMailbox:
    """A real SMTP server (aiosmtpd) on its own thread and loop, kernel-chosen loopback port:
    answers 451 (try later) while `refusing`, records every message it accepts."""

    def __init__(self):
        import threading

        from aiosmtpd.smtp import SMTP

        self.refusing = True
        self.refused = 0
        self.messages: list = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            return await asyncio.get_running_loop().create_server(
                lambda: SMTP(self, hostname="localhost"), "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle_DATA(self, server, session, envelope):
        import email

        if self.refusing:
            self.refused += 1
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def dispatch_with_contacts(store, ids: list[str], route_id: str, now_ms: int) -> None:
    """Jobs with a contact e-mail each, on a new route dispatched to van-1."""
    from backend.dispatch.jobstate import JobMachine
    from backend.dispatch.model import (
        Amounts,
        Contact,
        Job,
        JobState,
        Route,
        RouteStatus,
        RouteStop,
        Shift,
    )

    from .helpers import HERE, PLANNER

    await store.add_jobs([Job(i, HERE, demand=Amounts.of(kg=1),
                              contact=Contact("", "", f"{i}@example.com")) for i in ids], now_ms)
    route = Route(route_id, "van-1", Shift(now_ms - 3_600_000, now_ms + 8 * 3_600_000), "dep",
                  "dep", Amounts.of(kg=100), stops=tuple(RouteStop(i) for i in ids),
                  status=RouteStatus.DISPATCHED)
    ts = [JobMachine(i, ()).request(JobState.ASSIGNED, PLANNER, now_ms, f"as-{route_id}-{i}",
                                    route_id=route_id) for i in ids]
    await store.put_dispatch_route(route, None, now_ms, ts)


def test_dispatch_mails_survive_a_kill9_and_go_once_per_job(procs, tmp_path):
    """The customers' dispatch mails (docs/customers.md) from the real backend process: the
    SMTP server refuses (451) until the backend was killed with -9, more jobs are dispatched
    while it is down; after the restart every job's mail arrives, one per job by its event
    id, and each link opens the tracking page."""
    import re
    import urllib.request

    global db_url
    db_url = f"sqlite://{procs.db_path}"
    now = int(time.time() * 1000)
    box = SlowMailbox()
    public = "https://fleet.example.com"

    async def setup(store):
        await store.add_user("ann", "admin", "x", all_vehicles=True)
        sub = parse_subscription({"events": ["job.dispatched"], "channel": "customer"}, "ann",
                                 NotifySettings().policy)
        await store.add_subscription("ann", None, body_of(sub), "", 1)
        await dispatch_with_contacts(store, [f"a{i}" for i in range(5)], "ra", now)

    run(setup)
    config = tmp_path / "backend.toml"
    config.write_text(f'[notify]\npoll_s = 0.2\nretry_min_s = 0.2\npublic_url = "{public}"\n'
                      f'[notify.smtp]\nhost = "127.0.0.1"\nport = {box.port}\n'
                      'starttls = false\nsender = "fleet@example.com"\n')
    backend = procs.backend("--config", str(config))
    try:
        wait_for(lambda: box.refused >= 5, 30, "the first attempts (refused)")
        backend.kill9()
        run(lambda store: dispatch_with_contacts(store, [f"b{i}" for i in range(5)], "rb",
                                                 int(time.time() * 1000)))
        box.refusing = False
        backend = procs.backend("--config", str(config))
        wanted = {f"link.a{i}" for i in range(5)} | {f"link.b{i}" for i in range(5)}
        wait_for(lambda: {m["X-Fleet-Event-Id"] for m in box.messages} >= wanted, 60,
                 "every job's mail")
        by_id = {m["X-Fleet-Event-Id"]: m for m in box.messages}
        assert set(by_id) == wanted  # nothing else; one per job after deduplication by id
        for eid, m in by_id.items():
            assert m["To"] == f"{eid[len('link.'):]}@example.com"
            [url] = re.findall(r"https://\S+", m.get_payload(decode=True).decode())
            local = f"http://127.0.0.1:{procs.http_port}{url[len(public):]}"
            with urllib.request.urlopen(local, timeout=10) as page:  # noqa: S310 (loopback)
                assert page.status == 200
    finally:
        backend.stop()
        box.stop()
