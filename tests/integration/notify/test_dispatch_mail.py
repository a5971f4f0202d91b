"""The customer's dispatch mail (docs/customers.md) through the real app, the real store (both
kinds) and a real SMTP server (aiosmtpd on loopback): an admin turns it on (a `customer`
subscription; a dispatcher cannot); a job dispatched with a contact e-mail gets exactly one
mail whose link opens the tracking page; a job without one gets none; a job on a draft route
gets its mail when the route is dispatched, also after a notifier restart; a re-plan that
dispatches the job again sends nothing more; an invalid contact e-mail is refused by the API
and by the CSV import with nothing kept."""

from __future__ import annotations

import asyncio
import email
import re
import time

import pytest
from aiosmtpd.smtp import SMTP

from backend.api.notifications import NOTIFIER
from backend.notify.service import Notifier, channels_of
from backend.notify.settings import NotifySettings
from tests.authhelp import bearer
from tests.integration.api.apphelp import Api
from tests.pgfixture import STORE_KINDS

from .helpers import FakeClock

PATH = "/api/notifications/subscriptions"
PUBLIC = "https://fleet.example.com"
D = "dispatcher"
H = 3_600_000


class Mailbox:
    def __init__(self):
        self.messages: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[email.message.Message]:
        return [m for rcpt, m in self.messages if rcpt == [address]]


@pytest.fixture
async def mailbox():
    """A plain SMTP relay on a kernel-chosen loopback port (STARTTLS is test_channels')."""
    box = Mailbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(box, hostname="localhost"), "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    yield box
    server.close()
    await server.wait_closed()


@pytest.fixture(params=STORE_KINDS)
def store_url(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("_pg_url")
    return f"sqlite://{tmp_path / 'fleet.db'}"


def route(vehicle: str, stops: list[str], status: str, now: int) -> dict:
    return {"vehicle_id": vehicle, "shift": {"start_ms": now - H, "end_ms": now + 8 * H},
            "start_depot": "dep", "end_depot": "dep", "status": status,
            "stops": [{"job_id": j} for j in stops]}


def job(jid: str, mail: str = "") -> dict:
    return {"id": jid, "name": f"Order {jid}", "place": {"lat": 60.17, "lon": 24.94},
            "contact": {"name": "Anna", "email": mail}}


async def test_one_mail_per_dispatched_job_with_a_working_link(store_url, mailbox):
    settings = NotifySettings.parse({"public_url": PUBLIC, "smtp": {
        "host": "127.0.0.1", "port": mailbox.port, "starttls": False,
        "sender": "fleet@example.com"}})
    clock = FakeClock(int(time.time() * 1000))
    notifiers: list[Notifier] = []

    def mount(app, store):
        notifiers.append(Notifier(store, settings, channels_of(settings), clock=clock))
        app[NOTIFIER] = notifiers[0]

    async def rounds(notifier: Notifier, n: int = 2) -> None:
        for _ in range(n):
            clock.advance(1)
            await notifier.tick()

    async with Api(store_url, mount=mount) as api:
        c, now = api.call, clock()
        on = {"events": ["job.dispatched"], "channel": "customer"}
        _, err = await c("POST", PATH, role=D, body=on, expect=403)
        assert "admin" in err["error"]
        await c("POST", PATH, role="admin", body={**on, "target": "x@example.com"}, expect=400)
        mail = {"events": ["job.completed"], "channel": "email", "target": "o@example.com"}
        await c("POST", PATH, role="viewer", body={**on, "group": "north"}, expect=403)
        await c("POST", PATH, role="viewer", body={**mail, "group": "north"}, expect=403)
        driver = bearer(await api.driver_token("d1"))
        for body in (mail, {**mail, "group": "north"}, on):
            await c("POST", PATH, role=None, headers=driver, body=body, expect=403)
        assert await api.store.subscriptions() == []
        await c("POST", PATH, role="admin", body=on, expect=201)

        # an invalid contact e-mail: refused with its field, nothing kept (API and import)
        _, err = await c("POST", "/api/jobs", role=D, body=job("bad", "anna@"), expect=400)
        assert "contact.email" in err["error"]
        _, err = await c("POST", "/api/jobs/import", role=D, expect=400, csv=(
            "id,lat,lon,contact_email\nok1,60.1,24.9,ok@example.com\n"
            "bad2,60.1,24.9,Anna <anna@example.com>\n"))
        assert [(e["id"], "contact_email" in e["error"]) for e in err["errors"]] == \
            [("bad2", True)]
        for jid in ("bad", "ok1", "bad2"):
            await c("GET", f"/api/jobs/{jid}", role=D, expect=404)

        for jid, mail in (("a", "anna@example.com"), ("b", ""), ("c", "cyd@example.com")):
            await c("POST", "/api/jobs", role=D, body=job(jid, mail), expect=201)
        await c("PUT", "/api/routes/r1", role=D, body=route("van-1", ["a", "b"], "dispatched",
                                                            now), expect=201)
        _, r2 = await c("PUT", "/api/routes/r2", role=D,
                        body=route("van-2", ["c"], "draft", now), expect=201)
        notifier = notifiers[0]
        await rounds(notifier)
        [mail_a] = mailbox.to("anna@example.com")
        assert len(mailbox.messages) == 1  # b has no address, c's route is a draft
        assert mail_a["X-Fleet-Event-Id"] == "link.a"
        [url] = re.findall(r"https://\S+", mail_a.get_payload(decode=True).decode())
        assert url.startswith(PUBLIC + "/t/")
        path = url[len(PUBLIC):]
        status, page = await c("GET", path, role=None, raw=True)
        assert status == 200 and "<html" in page.lower()
        _, view = await c("GET", path + "/view", role=None, expect=200)
        assert view["stop"]["name"] == "Order a"
        _, links = await c("GET", "/api/jobs/a/links", role=D, expect=200)
        assert [lk["created_by"] for lk in links["links"]] == ["notify:customer"]

        # the draft is dispatched after a restart of the notifier (its memory gone)
        await notifier.stop()
        notifier = Notifier(api.store, settings, channels_of(settings), clock=clock)
        await c("PUT", "/api/routes/r2", role=D, expect=200,
                body={**route("van-2", ["c"], "dispatched", now), "version": r2["version"]})
        await rounds(notifier)
        assert len(mailbox.to("cyd@example.com")) == 1

        # a re-plan: a taken off r1, dispatched again on r3 → no second mail
        _, r1 = await c("GET", "/api/routes/r1", role=D, expect=200)
        await c("PUT", "/api/routes/r1", role=D, expect=200,
                body={**route("van-1", ["b"], "dispatched", now), "version": r1["version"]})
        await c("PUT", "/api/routes/r3", role=D, body=route("van-3", ["a"], "dispatched", now),
                expect=201)
        _, a = await c("GET", "/api/jobs/a", role=D, expect=200)
        assert (a["state"], a["route_id"]) == ("assigned", "r3")
        await rounds(notifier)
        await notifier.stop()
        assert len(mailbox.to("anna@example.com")) == 1
        assert sorted(r for rcpt, _ in mailbox.messages for r in rcpt) == \
            ["anna@example.com", "cyd@example.com"]
        # the outbox keeps no token once the mails left
        assert not await api.store.due_notifications(clock() + 10 * H, 10)
        assert await api.store.outbox_has("link.a") and not await api.store.outbox_has("link.b")
