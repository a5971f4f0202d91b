"""The dispatch mail's pure decisions (backend/notify/dispatch_mail.py): which job gets its
mail now, which waits for its draft route, which never; which customer subscription carries
it; and the `customer` subscription's shape."""

from __future__ import annotations

import pytest

from backend.dispatch.model import (
    Amounts,
    Contact,
    Job,
    JobRecord,
    JobState,
    Place,
    Point,
    Route,
    RouteStatus,
    RouteStop,
    Shift,
)
from backend.notify.dispatch_mail import Decision, carrier, decide
from backend.notify.egress import EgressPolicy
from backend.notify.subscriptions import Subscription, SubscriptionError, parse_subscription

MAILED = Job("a", Place(Point(60.17, 24.94)), contact=Contact("Anna", "", "anna@example.com"))


def rec(state=JobState.ASSIGNED, route="r1", job=MAILED) -> JobRecord:
    return JobRecord(job, state, route, 1)


def route(status=RouteStatus.DISPATCHED) -> Route:
    return Route("r1", "van-1", Shift(1_000, 100_000), "dep", "dep", Amounts.of(kg=1),
                 stops=(RouteStop("a"),), status=status)


@pytest.mark.parametrize("record, rt, expected", [
    (rec(), route(), Decision.SEND),
    (rec(JobState.EN_ROUTE), route(RouteStatus.ACTIVE), Decision.SEND),
    (rec(), route(RouteStatus.DRAFT), Decision.WAIT),
    (rec(job=Job("a", MAILED.place)), route(), Decision.DROP),  # no address
    (rec(route="r2"), route(), Decision.DROP),  # moved on: its new assignment decides
    (rec(JobState.UNASSIGNED, None), route(), Decision.DROP),
    (rec(JobState.COMPLETED), route(), Decision.DROP),
    (rec(), route(RouteStatus.CANCELLED), Decision.DROP),
    (None, route(), Decision.DROP),
    (rec(), None, Decision.DROP),
])
def test_decide(record, rt, expected):
    assert decide(record, rt, "r1") is expected


def sub(id_: int, created_ms: int = 0, channel: str = "customer") -> Subscription:
    return Subscription(id_, "boss", None, frozenset({"job.dispatched"}), channel, "",
                        created_ms=created_ms)


def test_the_oldest_covering_customer_subscription_carries_the_mail():
    subs = [(sub(3), frozenset({"van-1"})), (sub(2), frozenset({"van-2"})), (sub(4), None),
            (sub(1, channel="email"), None)]
    assert carrier(subs, "van-1", 10).id == 3
    assert carrier(subs, "van-9", 10).id == 4  # the fleet's
    assert carrier([(sub(5, created_ms=20), None)], "van-1", 10) is None  # made after


def test_a_customer_subscription_has_no_target_and_only_job_dispatched():
    ok = parse_subscription({"events": ["job.dispatched"], "channel": "customer"}, "boss",
                            EgressPolicy())
    assert (ok.channel, ok.target) == ("customer", "")
    for body in ({"events": ["job.completed"], "channel": "customer"},
                 {"events": ["job.dispatched"], "channel": "customer", "target": "a@b.example"},
                 {"events": ["job.dispatched"], "channel": "customer", "digest": "hourly"}):
        with pytest.raises(SubscriptionError):
            parse_subscription(body, "boss", EgressPolicy())


@pytest.mark.parametrize("address", ["anna@", "Anna <anna@example.com>", "a b@example.com",
                                     "a@b.example\r\nBcc: x@y.example"])
def test_a_contact_email_is_one_plain_address(address):
    with pytest.raises(ValueError, match="contact.email"):
        Contact("Anna", "", address)
