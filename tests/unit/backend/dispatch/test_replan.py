"""Which events ask for a re-plan, coalesced, on a fake clock (backend/dispatch/replan.py)."""

from backend.dispatch.model import Actor, ActorKind, Job, JobState, Place, Point, Transition
from backend.dispatch.replan import COALESCE_MS, RETRY_MS, URGENT_PRIORITY, ReplanTriggers

HERE = Place(Point(60.17, 24.94))
DRIVER = Actor(ActorKind.PERSON, "d1")


def t(job: str, to: JobState, frm: JobState = JobState.ASSIGNED) -> Transition:
    return Transition(f"t-{job}-{to.value}", job, frm, to, 1_000, DRIVER, 1_000, "r1")


def test_events_that_ask_and_those_that_do_not():
    tr = ReplanTriggers()
    assert not tr.job_added(Job("calm", HERE, priority=URGENT_PRIORITY - 1), 0)
    assert not tr.transition(t("a", JobState.FAILED), on_live_route=False, now_ms=0)  # draft
    assert not tr.transition(t("a", JobState.COMPLETED, JobState.ARRIVED), True, 0)
    assert not tr.alert({"rule": "offline", "state": "open", "vehicle": "v9"}, {"v1"}, 0)
    assert not tr.alert({"rule": "offline", "state": "closed", "vehicle": "v1"}, {"v1"}, 0)
    assert not tr.alert({"rule": "overspeed", "state": "open", "vehicle": "v1"}, {"v1"}, 0)
    assert tr.due_ms is None and tr.take(10**12) is None


def test_a_burst_of_events_is_one_replan_when_due():
    tr = ReplanTriggers()
    assert tr.job_added(Job("hot", HERE, priority=URGENT_PRIORITY), 1_000)
    assert tr.transition(t("b", JobState.FAILED), True, 2_000)
    assert tr.transition(t("c", JobState.CANCELLED), True, 3_000)
    assert tr.alert({"rule": "offline", "state": "open", "vehicle": "v2"}, {"v2"}, 4_000)
    assert tr.alert({"rule": "late_risk", "state": "open", "vehicle": "v1", "subject": "d",
                     "peak": 600}, {"v1", "v2"}, 5_000)
    assert tr.due_ms == 1_000 + COALESCE_MS  # from the first event
    assert tr.take(1_000 + COALESCE_MS - 1) is None
    r = tr.take(1_000 + COALESCE_MS)
    assert r.cause == ("urgent job hot added (priority 80); stop b failed; job c cancelled; "
                       "vehicle v2 offline; stop d on v1 late by ~10 min")
    assert r.unavailable == {"v2"}
    assert tr.due_ms is None and tr.take(10**12) is None  # taken once


def test_a_busy_planner_means_the_same_replan_later():
    tr = ReplanTriggers()
    tr.request("job j7 cancelled by the shop", 0, frozenset({"v3"}))
    r = tr.take(COALESCE_MS)
    tr.retry(r, COALESCE_MS)
    tr.request("stop x failed", COALESCE_MS + 1)  # joins the retried one
    assert tr.take(COALESCE_MS + RETRY_MS - 1) is None
    again = tr.take(COALESCE_MS + RETRY_MS)
    assert again.cause == "job j7 cancelled by the shop; stop x failed"
    assert again.unavailable == {"v3"}


def test_only_the_opening_of_an_alert_asks():
    tr = ReplanTriggers()
    late = {"id": "a1", "rule": "late_risk", "state": "open", "vehicle": "v1", "subject": "d",
            "peak": 300}
    assert tr.alert(late, {"v1"}, 0)
    tr.take(COALESCE_MS)
    assert not tr.alert({**late, "peak": 900}, {"v1"}, COALESCE_MS + 1)  # it grew: no more
    assert tr.due_ms is None
    assert tr.alert({**late, "id": "a2"}, {"v1"}, COALESCE_MS + 2)  # a new one asks
