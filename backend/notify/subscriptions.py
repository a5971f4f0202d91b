"""Subscriptions (pure): what a user (or an admin for a group) asked to hear about, where, and
when — the request checked field by field, the match of an event, and the time a delivery is
due under quiet hours and digests (docs/notifications.md). Everything takes `now_ms`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..emailaddr import is_plain_email
from .egress_policy import EgressPolicy, check_http_url
from .events import ALERT, ETA_CHANGED, EVENT_TYPES, Event

# `customer`: the job's dispatch mail to its customer's contact address with its tracking
# link (docs/customers.md); the subscription is the operator's switch for a group or fleet.
CUSTOMER = "customer"
CHANNELS = ("email", "webhook", "apprise", CUSTOMER)
DIGESTS = ("off", "hourly", "daily")
JOB_DISPATCHED = "job.dispatched"
# Fewer minutes of ETA change than this is GNSS and traffic noise, not news.
MIN_ETA_CHANGE_MIN = 1
MAX_ETA_CHANGE_MIN = 12 * 60
DEFAULT_ETA_CHANGE_MIN = 10
MAX_RULES = 50  # alert rules named in one subscription (the rule set is small)
MAX_LABEL = 200
MAX_TARGET = 2048
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class SubscriptionError(ValueError):
    """A request the API refuses (400), its message naming the field."""


@dataclass(frozen=True)
class Subscription:
    id: int
    owner: str
    group: str | None
    events: frozenset[str]
    channel: str
    target: str
    rules: frozenset[str] = frozenset()  # alerts of these rules only (empty: every rule)
    eta_change_min: int = DEFAULT_ETA_CHANGE_MIN
    tz: str = "UTC"
    quiet: tuple[time, time] | None = None  # [from, to) local time; may span midnight
    digest: str = "off"
    digest_at: time = time(8, 0)  # the daily digest's local time
    label: str = ""
    secret: str = ""
    created_ms: int = 0  # events the backend learnt before this are not sent (no history)

    @classmethod
    def from_row(cls, row: dict) -> Subscription:
        """The stored row (already checked when made)."""
        b = row["body"]
        quiet = b.get("quiet")
        return cls(row["id"], row["owner"], row["group"], frozenset(b["events"]), b["channel"],
                   b["target"], frozenset(b.get("rules", ())),
                   b.get("eta_change_min", DEFAULT_ETA_CHANGE_MIN), b.get("tz", "UTC"),
                   None if not quiet else (_hhmm(quiet["from"]), _hhmm(quiet["to"])),
                   b.get("digest", "off"), _hhmm(b.get("digest_at", "08:00")),
                   b.get("label", ""), row.get("secret", ""), row.get("created_ms", 0))

    def as_json(self) -> dict:
        """The REST shape (the secret never: it is shown once, when made)."""
        out = body_of(self)
        out.update(id=self.id, owner=self.owner, group=self.group)
        return out

    def matches(self, e: Event) -> bool:
        """Does this subscription want `e` (who may see it is the caller's to decide)?"""
        if self.channel == CUSTOMER:  # dispatch mails come from their own source
            return False
        if e.type not in self.events or e.known_ms < self.created_ms:
            return False
        if e.type == ALERT and self.rules and e.rule not in self.rules:
            return False
        if e.type == ETA_CHANGED:
            return abs(e.data.get("change_min", 0)) >= self.eta_change_min
        return True

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def due_ms(self, now_ms: int) -> int:
        """When an event arriving at `now_ms` is to be sent: now, or at the next digest, and
        never inside quiet hours (then at their end)."""
        at = now_ms if self.digest == "off" else self.next_digest_ms(now_ms)
        return self.after_quiet_ms(at)

    def next_digest_ms(self, now_ms: int) -> int:
        """The first digest time after `now_ms`: the next full hour, or the next `digest_at`
        local time."""
        local = datetime.fromtimestamp(now_ms / 1000, self.zone)
        if self.digest == "hourly":
            nxt = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        else:
            nxt = local.replace(hour=self.digest_at.hour, minute=self.digest_at.minute,
                                second=0, microsecond=0)
            if nxt <= local:
                nxt = _same_wall_time(nxt + timedelta(days=1))
        return int(nxt.timestamp() * 1000)

    def after_quiet_ms(self, at_ms: int) -> int:
        """`at_ms`, or the end of the quiet hours it falls in."""
        if self.quiet is None:
            return at_ms
        start, end = self.quiet
        local = datetime.fromtimestamp(at_ms / 1000, self.zone)
        t = local.time().replace(tzinfo=None)
        inside = (start <= t < end) if start <= end else (t >= start or t < end)
        if not inside or start == end:
            return at_ms
        end_dt = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if end_dt <= local:
            end_dt = _same_wall_time(end_dt + timedelta(days=1))
        return int(end_dt.timestamp() * 1000)


def _same_wall_time(dt: datetime) -> datetime:
    """`dt`'s wall time again in its zone (a day added across a DST change keeps 08:00)."""
    return dt.replace(tzinfo=None).replace(tzinfo=dt.tzinfo)


def _hhmm(value) -> time:
    m = _HHMM.match(value) if isinstance(value, str) else None
    if m is None:
        raise SubscriptionError(f"{value!r}: a local time HH:MM is needed")
    return time(int(m[1]), int(m[2]))


def body_of(s: Subscription) -> dict:
    """What the store keeps of a subscription (and the API shows)."""
    out: dict = {"events": sorted(s.events), "channel": s.channel, "target": s.target,
                 "tz": s.tz, "digest": s.digest, "label": s.label}
    if s.rules:
        out["rules"] = sorted(s.rules)
    if ETA_CHANGED in s.events:
        out["eta_change_min"] = s.eta_change_min
    if s.quiet:
        out["quiet"] = {"from": s.quiet[0].strftime("%H:%M"), "to": s.quiet[1].strftime("%H:%M")}
    if s.digest == "daily":
        out["digest_at"] = s.digest_at.strftime("%H:%M")
    return out


def check_email(address) -> str:
    if not is_plain_email(address):
        raise SubscriptionError(f"target: {str(address)[:80]!r} is not an e-mail address")
    return address


def check_target(channel: str, target, policy: EgressPolicy) -> str:
    """The channel's destination, checked (an IP literal against the egress rule; a name is
    checked again at each connection)."""
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET:
        raise SubscriptionError(f"target: a text of 1..{MAX_TARGET} characters is needed")
    if channel == "email":
        return check_email(target)
    if channel == "webhook":
        try:
            return check_http_url(target, policy)
        except ValueError as exc:
            raise SubscriptionError(f"target: {exc}") from None
    from .channels import check_apprise_url

    try:
        return check_apprise_url(target, policy)
    except ValueError as exc:
        raise SubscriptionError(f"target: {exc}") from None


def parse_subscription(body, owner: str, policy: EgressPolicy,
                       known_rules: frozenset[str] | None = None) -> Subscription:
    """A new subscription from the API's JSON object; SubscriptionError naming the field."""
    if not isinstance(body, dict):
        raise SubscriptionError("a JSON object is needed")
    allowed = {"events", "rules", "eta_change_min", "channel", "target", "group", "tz",
               "quiet", "digest", "digest_at", "label"}
    if set(body) - allowed:
        raise SubscriptionError(f"unknown fields {sorted(set(body) - allowed)}")
    events = body.get("events")
    if (not isinstance(events, list) or not events or len(events) > len(EVENT_TYPES)
            or not all(isinstance(e, str) and e in EVENT_TYPES for e in events)):
        raise SubscriptionError(f"events: a non-empty list of {', '.join(EVENT_TYPES)}")
    rules = body.get("rules", [])
    if (not isinstance(rules, list) or len(rules) > MAX_RULES
            or not all(isinstance(r, str) and 0 < len(r) <= 64 for r in rules)):
        raise SubscriptionError(f"rules: a list of at most {MAX_RULES} rule names")
    if known_rules is not None and set(rules) - known_rules:
        raise SubscriptionError(f"rules: unknown {sorted(set(rules) - known_rules)}")
    eta = body.get("eta_change_min", DEFAULT_ETA_CHANGE_MIN)
    if (not isinstance(eta, int) or isinstance(eta, bool)
            or not MIN_ETA_CHANGE_MIN <= eta <= MAX_ETA_CHANGE_MIN):
        raise SubscriptionError(f"eta_change_min: whole minutes within "
                                f"{MIN_ETA_CHANGE_MIN}..{MAX_ETA_CHANGE_MIN}")
    channel = body.get("channel")
    if channel not in CHANNELS:
        raise SubscriptionError(f"channel: one of {', '.join(CHANNELS)}")
    if channel == CUSTOMER:
        if body.get("target", "") != "" or events != [JOB_DISPATCHED]:
            raise SubscriptionError(f"channel {CUSTOMER}: events [{JOB_DISPATCHED!r}] and no "
                                    "target (the mail goes to each job's contact e-mail)")
        if body.get("digest", "off") != "off":
            raise SubscriptionError(f"digest: off for channel {CUSTOMER}")
        target = ""
    else:
        target = check_target(channel, body.get("target"), policy)
    group = body.get("group")
    if group is not None and (not isinstance(group, str) or not 0 < len(group) <= 64):
        raise SubscriptionError("group: a group's name")
    tz = body.get("tz", "UTC")
    try:
        if not isinstance(tz, str) or len(tz) > 64:
            raise ValueError
        ZoneInfo(tz)
    except (ValueError, ZoneInfoNotFoundError):
        raise SubscriptionError("tz: an IANA time zone such as Europe/Helsinki") from None
    quiet = body.get("quiet")
    if quiet is not None:
        if not isinstance(quiet, dict) or set(quiet) != {"from", "to"}:
            raise SubscriptionError('quiet: {"from": "HH:MM", "to": "HH:MM"}')
        try:
            quiet = (_hhmm(quiet["from"]), _hhmm(quiet["to"]))
        except SubscriptionError as exc:
            raise SubscriptionError(f"quiet: {exc}") from None
    digest = body.get("digest", "off")
    if digest not in DIGESTS:
        raise SubscriptionError(f"digest: one of {', '.join(DIGESTS)}")
    try:
        digest_at = _hhmm(body.get("digest_at", "08:00"))
    except SubscriptionError as exc:
        raise SubscriptionError(f"digest_at: {exc}") from None
    label = body.get("label", "")
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise SubscriptionError(f"label: a text of at most {MAX_LABEL} characters")
    return Subscription(0, owner, group, frozenset(events), channel, target, frozenset(rules),
                        eta, tz, quiet, digest, digest_at, label)


def digest_id(subscription_id: int, event_ids: list[str]) -> str:
    """A digest's stable id: the same members give the same id (a retried digest is the same
    digest to its receiver)."""
    h = hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()[:24]
    return f"digest.{subscription_id}.{h}"
