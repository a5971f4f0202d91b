"""The subscriptions API on a real app and store, every answer checked against
backend/openapi.yaml: subscribe, the secret once, the delivery log, owners and admins, and bad
destinations refused with their reason and nothing kept."""

from __future__ import annotations

from backend.api.notifications import NOTIFIER
from backend.notify.service import Notifier, channels_of
from backend.notify.settings import NotifySettings
from geostream.clock import wall_ms
from tests.integration.api.apphelp import Api

from .helpers import FakeClock, dispatch_jobs
from .receiver import Receiver

DAY_MS = 86_400_000


def next_noon_ms(now_ms: int) -> int:
    """The first 12:00 UTC after `now_ms`."""
    noon = now_ms - now_ms % DAY_MS + DAY_MS // 2
    return noon if noon > now_ms else noon + DAY_MS

PATH = "/api/notifications/subscriptions"
ALLOW_LOOPBACK = NotifySettings.parse({"allow_networks": ["127.0.0.0/8"]})


def mount_with(settings: NotifySettings, clock=None):
    def mount(app, store):
        app[NOTIFIER] = Notifier(store, settings, channels_of(settings), clock=clock or FakeClock())
    return mount


async def test_subscribe_deliver_and_read_the_log(tmp_path):
    receiver = await Receiver(fail_first=1).start()
    clock = FakeClock()
    try:
        async with Api(f"sqlite://{tmp_path / 'fleet.db'}",
                       mount=mount_with(ALLOW_LOOPBACK, clock)) as api:
            _, made = await api.call("POST", PATH, role="dispatcher", expect=201, body={
                "events": ["job.dispatched"], "channel": "webhook", "target": receiver.url,
                "label": "ops hook", "quiet": {"from": "23:00", "to": "05:00"}})
            sub = made["subscription"]
            assert made["secret"].startswith("whsec_") and "secret" not in sub
            assert (sub["owner"], sub["channel"], sub["quiet"]) == (
                "dispatcher0", "webhook", {"from": "23:00", "to": "05:00"})
            # the dispatcher sees every vehicle (the test user's scope)
            notifier = api.app[NOTIFIER]
            # events after the subscription (made at wall time) and outside its quiet hours
            # (23:00-05:00 UTC): the next noon, whatever the hour the suite runs at
            clock.now_ms = next_noon_ms(wall_ms())
            await dispatch_jobs(api.store, ["a"], "r1", "van-1", clock())
            await notifier.tick()
            clock.advance(10)
            await notifier.tick()
            _, log = await api.call("GET", f"{PATH}/{sub['id']}/deliveries", role="dispatcher",
                                    expect=200)
            assert [(d["ok"], d["state"]) for d in log["deliveries"]] == [
                (True, "delivered"), (False, "delivered")]
            assert log["deliveries"][1]["detail"].startswith("HTTP 503")
            # another user neither lists nor reads nor deletes it; an admin does
            _, theirs = await api.call("GET", PATH, role="viewer", expect=200)
            assert theirs["subscriptions"] == []
            await api.call("GET", f"{PATH}/{sub['id']}/deliveries", role="viewer", expect=404)
            await api.call("DELETE", f"{PATH}/{sub['id']}", role="viewer", expect=404)
            _, every = await api.call("GET", f"{PATH}?all=true", role="admin", expect=200)
            assert [s["id"] for s in every["subscriptions"]] == [sub["id"]]
            await api.call("DELETE", f"{PATH}/{sub['id']}", role="admin", expect=204)
            _, mine = await api.call("GET", PATH, role="dispatcher", expect=200)
            assert mine["subscriptions"] == []
            await notifier.stop()
    finally:
        await receiver.stop()


async def test_bad_subscriptions_are_refused_and_nothing_is_kept(tmp_path):
    async with Api(f"sqlite://{tmp_path / 'fleet.db'}",
                   mount=mount_with(NotifySettings.parse({}))) as api:
        base = {"events": ["alert"], "channel": "webhook"}
        for body, reason in [
            ({**base, "target": "http://127.0.0.1:8080/x"}, "loopback"),
            ({**base, "target": "http://[fd00::1]/x"}, "private"),
            ({**base, "target": "ftp://example.com/"}, "scheme"),
            ({**base, "channel": "email", "target": "ops@@example.com"}, "e-mail address"),
            ({**base, "target": "https://h.example.com/", "tz": "Nowhere/City"}, "tz"),
            ({**base, "channel": "apprise", "target": "json://192.168.1.5/"}, "private"),
        ]:
            _, got = await api.call("POST", PATH, role="viewer", body=body, expect=400)
            assert reason in got["error"], got
        _, got = await api.call("POST", PATH, role="viewer", expect=403, body={
            **base, "target": "https://h.example.com/", "group": "north"})
        _, got = await api.call("POST", PATH, role="admin", expect=404, body={
            **base, "target": "https://h.example.com/", "group": "north"})
        assert await api.store.subscriptions() == []
        await api.call("POST", PATH, role="viewer", expect=201, body={
            **base, "channel": "email", "target": "ops@example.com"})
        await api.app[NOTIFIER].stop()
