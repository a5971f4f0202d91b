"""Subscriptions, pure: the request checked field by field, which events match, and when a
delivery is due under quiet hours and digests (on a fake clock: `now_ms` values)."""

from datetime import UTC, datetime

import pytest

from backend.notify.egress import EgressPolicy
from backend.notify.events import Event
from backend.notify.service import EtaWatch, retry_at_ms
from backend.notify.subscriptions import SubscriptionError, digest_id, parse_subscription


def ms(text: str) -> int:
    """A UTC time as ms ('2026-12-06 21:30')."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def sub(**body):
    base = {"events": ["job.completed"], "channel": "webhook", "target": "https://x.test/h"}
    return parse_subscription({**base, **body}, "ann", EgressPolicy())


@pytest.mark.parametrize("body, field", [
    ({"events": []}, "events"), ({"events": ["job.exploded"]}, "events"),
    ({"channel": "pigeon"}, "channel"),
    ({"channel": "email", "target": "not-an-address"}, "target"),
    ({"channel": "email", "target": "a@b"}, "target"),
    ({"channel": "email", "target": "a@b.com\r\nBcc: x@y.z"}, "target"),
    ({"target": "http://10.0.0.1/h"}, "private"), ({"target": "http://[::1]/h"}, "loopback"),
    ({"target": "file:///etc/passwd"}, "scheme"), ({"eta_change_min": 0}, "eta_change_min"),
    ({"eta_change_min": True}, "eta_change_min"), ({"tz": "Mars/Olympus"}, "tz"),
    ({"quiet": {"from": "25:00", "to": "07:00"}}, "quiet"), ({"digest": "weekly"}, "digest"),
    ({"digest_at": "8am"}, "digest_at"), ({"label": "x" * 201}, "label"),
    ({"colour": "red"}, "unknown"), ({"rules": ["r"] * 51}, "rules"),
])
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(SubscriptionError, match=field):
        sub(**body)


def test_unknown_alert_rules_are_refused_when_the_rules_are_known():
    with pytest.raises(SubscriptionError, match="unknown"):
        parse_subscription({"events": ["alert"], "rules": ["nope"], "channel": "webhook",
                            "target": "https://x.test/"}, "ann", EgressPolicy(),
                           frozenset({"speeding"}))


def test_matching_by_type_rule_and_eta_change():
    s = sub(events=["alert", "job.eta_changed"], rules=["speeding"], eta_change_min=15)
    assert s.matches(Event("alert.1", "alert", 0, "v", rule="speeding"))
    assert not s.matches(Event("alert.2", "alert", 0, "v", rule="geofence"))
    assert not s.matches(Event("job.t", "job.completed", 0, "v"))
    assert s.matches(Event("eta.j.1", "job.eta_changed", 0, "v", data={"change_min": -15}))
    assert not s.matches(Event("eta.j.2", "job.eta_changed", 0, "v", data={"change_min": 14.9}))


def test_quiet_hours_across_midnight_in_the_subscriptions_zone():
    # 22:00-07:00 in Helsinki (UTC+2 in December)
    s = sub(tz="Europe/Helsinki", quiet={"from": "22:00", "to": "07:00"})
    assert s.due_ms(ms("2026-12-06 19:59")) == ms("2026-12-06 19:59")  # 21:59 local
    assert s.due_ms(ms("2026-12-06 20:00")) == ms("2026-12-07 05:00")  # 22:00 → 07:00
    assert s.due_ms(ms("2026-12-07 01:30")) == ms("2026-12-07 05:00")  # 03:30 → 07:00
    assert s.due_ms(ms("2026-12-07 05:00")) == ms("2026-12-07 05:00")  # 07:00: over


def test_daily_digest_at_its_local_time_and_not_inside_quiet_hours():
    s = sub(tz="Europe/Helsinki", digest="daily", digest_at="08:00")
    assert s.due_ms(ms("2026-12-06 05:59")) == ms("2026-12-06 06:00")
    assert s.due_ms(ms("2026-12-06 06:00")) == ms("2026-12-07 06:00")  # the next day's
    quiet = sub(tz="UTC", digest="hourly", quiet={"from": "12:00", "to": "13:30"})
    assert quiet.due_ms(ms("2026-12-06 10:10")) == ms("2026-12-06 11:00")
    assert quiet.due_ms(ms("2026-12-06 11:10")) == ms("2026-12-06 13:30")  # 12:00 is quiet


def test_a_daily_digest_keeps_its_wall_time_across_a_dst_change():
    s = sub(tz="Europe/Helsinki", digest="daily", digest_at="08:00")
    # Helsinki leaves summer time on 2026-10-25: 08:00 is 05:00 UTC before, 06:00 after
    assert s.due_ms(ms("2026-10-24 05:30")) == ms("2026-10-25 06:00")


def test_digest_ids_depend_on_the_members_only():
    assert digest_id(3, ["b", "a"]) == digest_id(3, ["a", "b"]) != digest_id(3, ["a"])


def test_eta_changes_are_told_when_they_move_by_the_subscriptions_minutes():
    s = sub(events=["job.eta_changed"], eta_change_min=10)
    w = EtaWatch()
    base = ms("2026-12-06 10:00")
    assert w.observe(s, "j", "r", "v", base, 0) is None  # the baseline
    assert w.observe(s, "j", "r", "v", base + 9 * 60_000, 1) is None
    e = w.observe(s, "j", "r", "v", base + 12 * 60_000, 2)
    assert e.type == "job.eta_changed" and e.data["change_min"] == 12.0
    assert w.observe(s, "j", "r", "v", base + 15 * 60_000, 3) is None  # 3 min since told
    assert w.observe(s, "j", "r", "v", base + 2 * 60_000, 4).data["change_min"] == -10.0


def test_retries_back_off_to_a_cap():
    assert [retry_at_ms(0, n, 5, 60) for n in range(6)] == [5000, 10000, 20000, 40000,
                                                            60000, 60000]


def test_events_learnt_before_the_subscription_are_not_sent():
    from dataclasses import replace

    s = replace(sub(), created_ms=1000)
    assert not s.matches(Event("job.a", "job.completed", 0, "v", known_ms=999))
    assert s.matches(Event("job.b", "job.completed", 0, "v", known_ms=1000))
