"""The channels a notification leaves by (docs/notifications.md): signed webhooks and Apprise
URLs through the egress guard, e-mail over SMTP with STARTTLS and authentication. Each
`send(subscription, payload, now_ms)` returns an `Outcome`; none raises for a receiver's fault.

`Outcome.retry` says whether trying again can help: a refused destination, a redirect or a
4xx (other than 408 and 429) will not change by waiting, a timeout or a 5xx may."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiohttp

from .egress import EgressClient, EgressPolicy, EgressRefused, guarded, literal_ip
from .settings import SmtpSettings
from .signing import EVENT_ID_HEADER, SIGNATURE_HEADER, signature
from .subscriptions import Subscription, check_email

log = logging.getLogger(__name__)

# What of a failure goes into the delivery log (the receiver's words, shortened).
MAX_DETAIL = 300
# HTTP answers that may succeed later.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# An SMTP server that does not answer gives up after this long (then retried by the outbox).
SMTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    retry: bool = True


def body_bytes(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def summary(payload: dict) -> tuple[str, str]:
    """A subject line and a plain-text body for people (e-mail, chat)."""
    if payload.get("type") == "digest":
        events = payload.get("events", [])
        title = f"[fleet] digest: {len(events)} events"
        lines = [_line(e) for e in events]
        return title, "\n".join(lines) + "\n"
    return f"[fleet] {_line(payload)}", _line(payload) + "\n\n" + json.dumps(
        payload, indent=2, sort_keys=True) + "\n"


def _line(e: dict) -> str:
    what = e.get("type", "?")
    who = " ".join(f"{k} {e[k]}" for k in ("job", "vehicle", "rule") if e.get(k))
    return f"{what} {who}".strip()


class WebhookChannel:
    """JSON POSTed, signed (signing.py), through the egress guard."""

    def __init__(self, client: EgressClient):
        self.client = client

    async def send(self, sub: Subscription, payload: dict, now_ms: int) -> Outcome:
        body = body_bytes(payload)
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: payload["id"],
                   SIGNATURE_HEADER: signature(sub.secret, now_ms // 1000, body),
                   "User-Agent": "fleet-agent-notify/1"}
        try:
            answer = await self.client.post(sub.target, body, headers)
        except EgressRefused as exc:
            return Outcome(False, f"refused: {exc}", retry=False)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Outcome(False, f"unreachable: {type(exc).__name__}: {exc}"[:MAX_DETAIL])
        if 200 <= answer.status < 300:
            return Outcome(True, f"HTTP {answer.status}")
        text = answer.body[:120].decode("utf-8", "replace")
        detail = f"HTTP {answer.status} {text}".strip()[:MAX_DETAIL]
        if 300 <= answer.status < 400:
            return Outcome(False, detail + " (redirects are not followed)", retry=False)
        return Outcome(False, detail, retry=answer.status in RETRY_STATUSES)


def check_apprise_url(url: str, policy: EgressPolicy) -> str:
    """An Apprise URL Apprise understands, whose host (if an IP literal) the egress rule
    allows; ValueError saying what is wrong. Names are checked at each connection."""
    import apprise

    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        raise ValueError("not an Apprise URL this backend supports")
    host = getattr(plugin, "host", None)
    ip = literal_ip(host) if isinstance(host, str) and host else None
    if ip is not None:
        try:
            policy.check(ip)
        except EgressRefused as exc:
            raise ValueError(str(exc)) from None
    return url


class AppriseChannel:
    """Any service Apprise knows; the plugin runs on a worker thread inside `guarded()`, so
    its connections obey the egress rule too."""

    def __init__(self, policy: EgressPolicy):
        self.policy = policy

    async def send(self, sub: Subscription, payload: dict, now_ms: int) -> Outcome:
        title, body = summary(payload)
        return await asyncio.to_thread(self._send, sub.target, title, body)

    def _send(self, url: str, title: str, body: str) -> Outcome:
        import apprise

        with guarded(self.policy) as refusals, \
                apprise.LogCapture(level=logging.WARNING) as captured:
            a = apprise.Apprise()
            if not a.add(url):
                return Outcome(False, "not an Apprise URL this backend supports", retry=False)
            ok = a.notify(body=body, title=title)
            detail = captured.getvalue().strip().replace("\n", " ")
        if ok:
            return Outcome(True, "sent")
        if refusals:
            return Outcome(False, f"egress refused: {refusals[0]}"[:MAX_DETAIL], retry=False)
        return Outcome(False, (detail or "Apprise could not send")[:MAX_DETAIL])


class EmailChannel:
    """SMTP submission: STARTTLS (required unless the admin turned it off), then AUTH if a
    user is configured. smtplib on a worker thread (the standard library's client)."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._password = (Path(settings.password_file).read_text().strip()
                          if settings.password_file else "")

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.settings.ca_file or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    async def send(self, sub: Subscription, payload: dict, now_ms: int) -> Outcome:
        if not self.settings.configured:
            return Outcome(False, "no SMTP server configured ([notify.smtp])")
        title, text = summary(payload)
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = check_email(sub.target)
        msg["Subject"] = title
        msg["X-Fleet-Event-Id"] = payload["id"]
        msg.set_content(text)
        return await asyncio.to_thread(self.deliver, msg)

    def send_message(self, msg: EmailMessage) -> None:
        """Deliver one message (raises smtplib/ssl/OS errors): reports use it directly."""
        s = self.settings
        with smtplib.SMTP(s.host, s.port, timeout=SMTP_TIMEOUT_S) as smtp:
            smtp.ehlo()
            if s.starttls:
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
                smtp.starttls(context=self.tls_context())
                smtp.ehlo()
            if s.username:
                auth = smtp.esmtp_features.get("auth", "").upper().split()
                if "PLAIN" in auth:  # one mechanism: over TLS PLAIN is enough, and a failure
                    smtp.user, smtp.password = s.username, self._password  # is one answer
                    smtp.auth("PLAIN", smtp.auth_plain)
                else:
                    smtp.login(s.username, self._password)
            smtp.send_message(msg)

    def deliver(self, msg: EmailMessage) -> Outcome:
        """Send one message, its outcome (a refused recipient is given up, the rest retried)."""
        try:
            self.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            return Outcome(False, f"recipient refused: {exc}"[:MAX_DETAIL], retry=False)
        except smtplib.SMTPAuthenticationError as exc:
            return Outcome(False, f"SMTP authentication failed: {exc}"[:MAX_DETAIL])
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            return Outcome(False, f"SMTP: {type(exc).__name__}: {exc}"[:MAX_DETAIL])
        return Outcome(True, "accepted by the SMTP server")
