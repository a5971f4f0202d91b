"""Subscriptions made, listed and deleted on behalf of a principal: the one set of rules the
HTTP API, the MCP tools and the CLI share (docs/notifications.md, "Subscriptions"). Anyone
logged in (viewer and up; not a driver login) subscribes for themself; only an admin for a
vehicle group, or for the customers' dispatch mails; a subscription is seen and deleted by
its owner and by admins (to others it does not exist)."""

from __future__ import annotations

from ..authz import Principal, Role
from .egress_policy import EgressPolicy
from .settings import NotifySettings
from .signing import new_secret
from .subscriptions import CUSTOMER, Subscription, SubscriptionError, body_of, parse_subscription

# Subscriptions one user may have: each costs a match per event.
MAX_PER_USER = 100


class Refused(Exception):
    """The request is refused; `status` is the HTTP answer it means (400, 403, 404)."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


def _viewer(who: Principal) -> None:
    if not who.may(Role.VIEWER):
        raise Refused(403, "needs role viewer (a driver login has no subscriptions)")


async def list_subscriptions(store, who: Principal, every: bool = False) -> list[dict]:
    """The caller's subscriptions (an admin's `every`: everyone's), as the API shows them."""
    _viewer(who)
    owner = None if every and who.may(Role.ADMIN) else who.name
    return [Subscription.from_row(r).as_json() for r in await store.subscriptions(owner)]


async def subscribe(store, who: Principal, body, settings: NotifySettings | None,
                    now_ms: int) -> tuple[dict, str]:
    """A new subscription and its webhook secret ("" for other channels: shown only here)."""
    _viewer(who)
    policy = settings.policy if settings is not None else EgressPolicy()
    try:
        sub = parse_subscription(body, who.name, policy)
    except SubscriptionError as exc:
        raise Refused(400, str(exc)) from None
    if sub.channel == CUSTOMER:
        if not who.may(Role.ADMIN):
            raise Refused(403, "only an admin turns on the customers' dispatch mails")
        if settings is None or not settings.customer_mail:
            raise Refused(400, "channel customer needs [notify] public_url and [notify.smtp] "
                          "in the backend's configuration")
    if sub.group is not None:
        if not who.may(Role.ADMIN):
            raise Refused(403, "only an admin subscribes for a group")
        if sub.group not in {g["name"] for g in await store.groups()}:
            raise Refused(404, f"no group {sub.group!r}")
    if len(await store.subscriptions(who.name)) >= MAX_PER_USER:
        raise Refused(400, f"at most {MAX_PER_USER} subscriptions per user")
    secret = new_secret() if sub.channel == "webhook" else ""
    sid = await store.add_subscription(who.name, sub.group, body_of(sub), secret, now_ms)
    return Subscription.from_row(await store.subscription(sid)).as_json(), secret


async def owned(store, who: Principal, raw_id) -> Subscription:
    """The subscription `raw_id` if the caller owns it or is an admin; else Refused 404."""
    _viewer(who)
    text = str(raw_id)
    if not text.isdigit() or len(text) > 18:
        raise Refused(400, "id must be a number")
    row = await store.subscription(int(text))
    if row is None or (row["owner"] != who.name and not who.may(Role.ADMIN)):
        raise Refused(404, f"no subscription {text}")
    return Subscription.from_row(row)


async def unsubscribe(store, who: Principal, raw_id) -> Subscription:
    sub = await owned(store, who, raw_id)
    await store.delete_subscription(sub.id)
    return sub
