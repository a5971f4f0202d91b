"""The pure decision of a driver action (backend/driver/actions.py): parsing hostile JSON, the
digest the key binds, the order of a device's actions, conflicts, precedence over detection."""

import pytest

from backend.dispatch.jobstate import DETECTOR, JobMachine, Visit
from backend.dispatch.model import (
    Job,
    JobRecord,
    JobState,
    Place,
    Point,
    Route,
    RouteStop,
    Shift,
)
from backend.driver.actions import (
    MAX_OFFLINE_MS,
    ActionRefused,
    action_time,
    decide,
    parse_action,
)

NOW = 1_796_000_000_000
ROUTE = Route("r1", "v1", Shift(NOW - 3_600_000, NOW + 3_600_000), "dep", "dep",
              driver_id="d1", stops=(RouteStop("a"),))
JOB = Job("a", Place(Point(60.17, 24.94)))


def act(**kw):
    base = {"key": "device-01-k1", "device_id": "device-01", "device_seq": 1,
            "kind": "complete", "job_id": "a", "route_id": "r1"}
    return parse_action(base | kw)


def rec(state=JobState.ASSIGNED, route_id="r1"):
    return JobRecord(JOB, state, route_id)


def assigned():
    m = JobMachine("a")
    from backend.dispatch.model import Actor, ActorKind

    m.request(JobState.ASSIGNED, Actor(ActorKind.RULE, "planner"), NOW - 1000, "t0",
              route_id="r1")
    return m.history


def test_the_digest_binds_every_field_and_nothing_else():
    a = act()
    assert a.digest() == act().digest()
    for change in ({"kind": "arrive"}, {"job_id": "b"}, {"done_ms": 5}, {"device_seq": 2},
                   {"pod": {"recipient": "X"}}):
        assert act(**change).digest() != a.digest(), change
    assert a.transition_id == act(done_ms=9).transition_id  # from the key only
    assert a.transition_id != act(key="device-01-k2").transition_id


@pytest.mark.parametrize("raw,field", [
    ([], "object"),
    ({"key": "k" * 65, "device_id": "device-01", "device_seq": 1, "kind": "arrive"}, "key"),
    ({"key": "device-01-k1", "device_id": "dev ice 01", "device_seq": 1, "kind": "arrive"},
     "device_id"),
    ({"key": "device-01-k1", "device_id": "device-01", "device_seq": 2**53, "kind": "arrive",
      "job_id": "a", "route_id": "r1"}, "device_seq"),
    ({"key": "device-01-k1", "device_id": "device-01", "device_seq": 1, "kind": "arrive",
      "route_id": "r1"}, "job_id"),
    ({"key": "device-01-k1", "device_id": "device-01", "device_seq": 1, "kind": "arrive",
      "job_id": "a\n", "route_id": "r1"}, "job_id"),
    ({"key": "device-01-k1", "device_id": "device-01", "device_seq": 1, "kind": "message",
      "text": "bell\x07"}, "control"),
    ({"key": "device-01-k1", "device_id": "device-01", "device_seq": 1, "kind": "arrive",
      "job_id": "a", "route_id": "r1", "pod": {"recipient": "x"}}, "pod"),
    ({"key": "device-01-k1", "device_id": "device-01", "device_seq": 1, "kind": "complete",
      "job_id": "a", "route_id": "r1", "pod": {"photos": ["f" + "0" * 40] * 2}}, "twice"),
])
def test_hostile_actions_are_refused_naming_the_field(raw, field):
    with pytest.raises(ActionRefused, match=field):
        parse_action(raw)


def test_applied_once_as_the_driver_and_a_repeat_is_the_same_transition():
    d = decide(act(done_ms=NOW - 60_000), "d1", NOW, last_seq=None, job=rec(), route=ROUTE,
               history=assigned())
    t = d.transition
    assert d.outcome == "applied" and t.to_state is JobState.COMPLETED
    assert str(t.by) == "person:driver:d1" and t.at_ms == NOW - 60_000
    again = decide(act(done_ms=NOW - 60_000), "d1", NOW, last_seq=None, job=rec(),
                   route=ROUTE, history=[*assigned(), t])
    assert again.transition is None or again.transition.id == t.id


def test_out_of_order_and_foreign_and_cancelled_and_replanned_are_conflicts():
    h = assigned()
    late = decide(act(device_seq=3), "d1", NOW, last_seq=4, job=rec(), route=ROUTE, history=h)
    assert late.conflict and "order" in late.detail
    theirs = decide(act(), "d2", NOW, last_seq=None, job=rec(), route=ROUTE, history=h)
    assert theirs.conflict and "no longer this driver's" in theirs.detail
    gone = decide(act(), "d1", NOW, last_seq=None, job=rec(JobState.CANCELLED), route=ROUTE,
                  history=h)
    assert gone.conflict and "cancelled" in gone.detail
    moved = decide(act(), "d1", NOW, last_seq=None, job=rec(route_id="r2"), route=ROUTE,
                   history=h)
    assert moved.conflict and "re-planned to route r2" in moved.detail
    off = decide(act(), "d1", NOW, last_seq=None, job=rec(JobState.UNASSIGNED, None),
                 route=ROUTE, history=h)
    assert off.conflict and "no route" in off.detail


def test_a_refused_change_is_a_conflict_not_an_error():
    m = JobMachine("a", assigned())
    from backend.dispatch.model import Actor, ActorKind

    m.request(JobState.FAILED, Actor(ActorKind.PERSON, "dispatcher"), NOW, "t1", reason="x")
    d = decide(act(), "d1", NOW, last_seq=None, job=rec(JobState.FAILED), route=ROUTE,
               history=m.history)
    assert d.conflict and "cannot go from failed to completed" in d.detail


def test_the_driver_takes_over_a_detected_arrival():
    m = JobMachine("a", assigned())
    m.detected(Visit(arrived=(NOW - 5000, 60.17, 24.94)), NOW - 4000, DETECTOR, "r1")
    d = decide(act(kind="arrive"), "d1", NOW, last_seq=None, job=rec(JobState.ARRIVED),
               route=ROUTE, history=m.history)
    assert d.outcome == "applied" and d.transition.by.id == "driver:d1"


def test_the_phones_clock_is_clamped():
    assert action_time(None, NOW) == NOW
    assert action_time(NOW + 10**9, NOW) == NOW
    assert action_time(0, NOW) == NOW - MAX_OFFLINE_MS
    assert action_time(NOW - 5, NOW) == NOW - 5
