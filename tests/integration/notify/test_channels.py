"""The channels against real servers on loopback: e-mail to an aiosmtpd server that demands
STARTTLS and authentication, an Apprise URL to a loopback HTTP receiver (through the egress
guard: refused without the allow-list), and bad destinations refused before anything is kept."""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from backend.notify.egress import EgressPolicy
from backend.notify.service import Notifier, channels_of
from backend.notify.settings import NotifySettings
from backend.notify.subscriptions import SubscriptionError, body_of, parse_subscription

from .helpers import FakeClock, dispatch_jobs
from .receiver import Receiver

USER, PASSWORD = "fleet", "s3cret-pass"


class Mailbox:
    """aiosmtpd's handler: every accepted message, and whether its session was secured."""

    def __init__(self):
        self.messages: list[tuple[list[str], bytes, bool, bool]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content,
                              session.ssl is not None, bool(session.authenticated)))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535 itself


@pytest.fixture
async def smtp_server(pki):
    """A real SMTP server on a kernel-chosen loopback port: STARTTLS, then AUTH, required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["cert"], pki["key"])
    box = Mailbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(box, hostname="localhost", tls_context=ctx, require_starttls=True,
                     auth_required=True, auth_require_tls=True, authenticator=authenticator),
        "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    yield box
    server.close()
    await server.wait_closed()


def settings_for(box, pki, tmp_path, password=PASSWORD) -> NotifySettings:
    secret = tmp_path / "smtp-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return NotifySettings.parse({"smtp": {
        "host": "127.0.0.1", "port": box.port, "username": USER,
        "password_file": str(secret), "sender": "fleet@example.com", "ca_file": pki["ca"]}})


async def run_one(store, settings, body, clock, rounds=1):
    await store.add_user("ann", "admin", "x", all_vehicles=True)
    sub = parse_subscription(body, "ann", settings.policy)
    sid = await store.add_subscription("ann", None, body_of(sub), "whsec_x", 1)
    await dispatch_jobs(store, ["a"], "r1", "van-1", clock())
    notifier = Notifier(store, settings, channels_of(settings), clock=clock)
    try:
        for _ in range(rounds):
            await notifier.tick()
    finally:
        await notifier.stop()
    return await store.delivery_log(sid, 10)


async def test_email_over_starttls_with_authentication(smtp_server, pki, tmp_path, sqlite_store):
    clock = FakeClock()
    log = await run_one(sqlite_store, settings_for(smtp_server, pki, tmp_path),
                        {"events": ["job.dispatched"], "channel": "email",
                         "target": "ops@example.com"}, clock)
    assert [x["ok"] for x in log] == [True]
    [(rcpt, content, secured, authenticated)] = smtp_server.messages
    assert rcpt == ["ops@example.com"] and secured and authenticated
    text = content.decode()
    assert "Subject: [fleet] job.dispatched job a vehicle van-1" in text
    assert "X-Fleet-Event-Id: job.as-r1-a" in text


async def test_a_wrong_smtp_password_is_logged_and_retried(smtp_server, pki, tmp_path,
                                                           sqlite_store):
    log = await run_one(sqlite_store, settings_for(smtp_server, pki, tmp_path, "wrong"),
                        {"events": ["job.dispatched"], "channel": "email",
                         "target": "ops@example.com"}, FakeClock())
    assert smtp_server.messages == []
    assert [(x["ok"], x["state"]) for x in log] == [(False, "pending")]
    assert "authentication failed" in log[0]["detail"]


async def test_an_apprise_url_reaches_a_loopback_receiver_only_when_allowed(sqlite_store):
    receiver = await Receiver().start()
    target = f"json://127.0.0.1:{receiver.port}/hook"
    try:
        allowed = NotifySettings.parse({"allow_networks": ["127.0.0.0/8"]})
        log = await run_one(sqlite_store, allowed, {"events": ["job.dispatched"],
                                                 "channel": "apprise", "target": target},
                            FakeClock())
        assert [x["ok"] for x in log] == [True]
        [req] = receiver.requests
        sent = json.loads(req.body)
        assert sent["title"] == "[fleet] job.dispatched job a vehicle van-1"
        assert '"id": "job.as-r1-a"' in sent["message"]
    finally:
        await receiver.stop()


async def test_an_apprise_url_to_a_name_of_loopback_is_refused_when_connecting(sqlite_store):
    """`localhost` passes the check when subscribing (a name); the guard refuses it where
    Apprise connects, and the delivery is given up, not retried."""
    receiver = await Receiver().start()
    try:
        strict = NotifySettings.parse({})
        log = await run_one(sqlite_store, strict, {
            "events": ["job.dispatched"], "channel": "apprise",
            "target": f"json://localhost:{receiver.port}/hook"}, FakeClock())
    finally:
        await receiver.stop()
    assert receiver.requests == []
    assert [x["state"] for x in log] == ["failed"], log
    assert "egress refused" in log[0]["detail"]


@pytest.mark.parametrize("body, message", [
    ({"channel": "email", "target": "ops@@example.com"}, "not an e-mail address"),
    ({"channel": "webhook", "target": "http://127.0.0.1:9/h"}, "loopback"),
    ({"channel": "webhook", "target": "http://169.254.169.254/"}, "link-local"),
    ({"channel": "apprise", "target": "json://10.1.2.3/hook"}, "private"),
    ({"channel": "apprise", "target": "nosuchservice://x"}, "not an Apprise URL"),
])
def test_bad_destinations_are_refused_with_their_reason(body, message):
    with pytest.raises(SubscriptionError, match=message):
        parse_subscription({"events": ["alert"], **body}, "ann", EgressPolicy())
