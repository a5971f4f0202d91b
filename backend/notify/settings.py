"""The `[notify]` table of the backend's configuration (docs/notifications.md), parsed and
checked at start: a bad key or value stops the backend with its name, never a delivery later."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .egress_policy import EgressPolicy, parse_networks

# Where the outbox looks for work when nothing woke it: new job transitions and alerts are
# read at this pace too (a delivery is at most this late plus the receiver's time).
POLL_S = 2.0
# The first retry's delay; each next one doubles (backend/notify/service.py, up to an hour).
RETRY_MIN_S = 5.0
# SMTP submission's port (RFC 6409), with STARTTLS.
SMTP_PORT = 587
# The base of the links in customers' mails: a scheme, a host, an optional port and path.
_PUBLIC_URL = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]{1,260}(/[A-Za-z0-9._~/-]{0,200})?(?<!/)$")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = ""
    port: int = SMTP_PORT
    starttls: bool = True  # refuse to send over a connection that did not upgrade
    username: str = ""
    password_file: str = ""  # a file of mode 0600 (never the password in the config)
    sender: str = ""  # the From: address
    ca_file: str = ""  # the CA of the server's certificate; empty: the system's

    @property
    def configured(self) -> bool:
        return bool(self.host and self.sender)


@dataclass(frozen=True)
class ReportSettings:
    """`[notify.report]`: a summary e-mailed every day (or week) at `at`, local time in `tz`."""

    every: str = ""  # "daily" or "weekly"; empty: no reports
    at: str = "07:00"
    tz: str = "UTC"
    to: tuple[str, ...] = ()
    title: str = "Fleet report"
    group: str = ""  # only this vehicle group's vehicles; empty: the whole fleet

    @property
    def configured(self) -> bool:
        return bool(self.every and self.to)


def parse_report(table) -> ReportSettings:
    from zoneinfo import ZoneInfo

    from .subscriptions import _hhmm, check_email

    if not isinstance(table, dict):
        raise ValueError("[notify.report] must be a table")
    fields = set(ReportSettings.__dataclass_fields__)
    if set(table) - fields:
        raise ValueError(f"[notify.report]: unknown keys {sorted(set(table) - fields)}")
    r = ReportSettings(**{**table, "to": tuple(table.get("to", ()))})
    if r.every not in ("", "daily", "weekly"):
        raise ValueError("[notify.report] every: daily or weekly")
    try:
        _hhmm(r.at)
        ZoneInfo(r.tz)
        for a in r.to:
            check_email(a)
    except Exception as exc:
        raise ValueError(f"[notify.report]: {exc}") from None
    return r


@dataclass(frozen=True)
class NotifySettings:
    allow_networks: tuple[str, ...] = ()
    poll_s: float = POLL_S
    retry_min_s: float = RETRY_MIN_S
    smtp: SmtpSettings = SmtpSettings()
    report: ReportSettings = ReportSettings()
    # the web app's address as customers reach it (the tracking links in dispatch mails)
    public_url: str = ""

    @property
    def customer_mail(self) -> bool:
        """Can dispatch mails to customers be sent (docs/customers.md)?"""
        return bool(self.public_url and self.smtp.configured)

    @property
    def policy(self) -> EgressPolicy:
        return EgressPolicy.from_config(self.allow_networks)

    @classmethod
    def parse(cls, table: dict) -> NotifySettings:
        known = {"allow_networks", "poll_s", "retry_min_s", "smtp", "report", "public_url"}
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"[notify]: unknown keys {sorted(unknown)}")
        nets = table.get("allow_networks", [])
        if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
            raise ValueError("[notify] allow_networks: a list of addresses or networks")
        parse_networks(nets)
        poll = table.get("poll_s", POLL_S)
        if not isinstance(poll, int | float) or not 0.05 <= poll <= 60:
            raise ValueError("[notify] poll_s must be within 0.05..60")
        retry = table.get("retry_min_s", RETRY_MIN_S)
        if not isinstance(retry, int | float) or not 0.05 <= retry <= 600:
            raise ValueError("[notify] retry_min_s must be within 0.05..600")
        smtp = table.get("smtp", {})
        if not isinstance(smtp, dict):
            raise ValueError("[notify.smtp] must be a table")
        fields = set(SmtpSettings.__dataclass_fields__)
        if set(smtp) - fields:
            raise ValueError(f"[notify.smtp]: unknown keys {sorted(set(smtp) - fields)}")
        try:
            s = SmtpSettings(**smtp)
        except TypeError as exc:
            raise ValueError(f"[notify.smtp]: {exc}") from None
        if not isinstance(s.port, int) or not 1 <= s.port <= 65535:
            raise ValueError("[notify.smtp] port must be within 1..65535")
        report = parse_report(table.get("report", {}))
        if report.configured and not s.configured:
            raise ValueError("[notify.report] needs [notify.smtp] (reports go by e-mail)")
        public = table.get("public_url", "")
        if not isinstance(public, str) or (public and not _PUBLIC_URL.match(public)):
            raise ValueError("[notify] public_url: the web app's base URL, "
                             "https://host[:port][/path] (no query, no trailing slash)")
        return cls(tuple(nets), float(poll), float(retry), s, report, public)
