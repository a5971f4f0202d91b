"""The job state machine on a fake clock, and the precedence rules (docs/dispatch.md):
a person's action wins over detection, late readings never undo what a person did, and
announced transitions are corrected by new ones, never rewritten."""

import pytest

from backend.dispatch.jobstate import DETECTOR, IllegalTransition, JobMachine, Visit
from backend.dispatch.model import Actor, ActorKind, JobState

S = JobState
DISPATCHER = Actor(ActorKind.PERSON, "alice")
DRIVER = Actor(ActorKind.PERSON, "driver-7")
PLANNER = Actor(ActorKind.RULE, "planner")


class Clock:
    def __init__(self, t: int = 1_000_000):
        self.t = t

    def __call__(self, step: int = 1_000) -> int:
        self.t += step
        return self.t


def assigned(clock: Clock) -> JobMachine:
    m = JobMachine("j1")
    m.request(S.ASSIGNED, PLANNER, clock(), "a1", route_id="r1")
    return m


def test_lifecycle_records_when_where_and_who():
    clock = Clock()
    m = assigned(clock)
    m.request(S.EN_ROUTE, DRIVER, clock(), "e1")
    t = m.request(S.COMPLETED, DRIVER, clock(), "c1", lat=60.1, lon=24.9, reason="signed")
    assert m.state is S.COMPLETED
    assert [(x.from_state, x.to_state) for x in m.history] == [
        (S.UNASSIGNED, S.ASSIGNED), (S.ASSIGNED, S.EN_ROUTE), (S.EN_ROUTE, S.COMPLETED)]
    assert (t.at_ms, t.recorded_ms, t.by, t.lat, t.route_id) == (clock.t, clock.t, DRIVER,
                                                                 60.1, "r1")


def test_illegal_transitions_are_refused_and_repeats_are_idempotent():
    clock = Clock()
    m = JobMachine("j1")
    with pytest.raises(IllegalTransition, match="unassigned to arrived"):
        m.request(S.ARRIVED, DRIVER, clock(), "x")
    first = m.request(S.ASSIGNED, PLANNER, clock(), "a1")
    assert m.request(S.ASSIGNED, PLANNER, clock(), "a1") is first  # same id: same transition
    m.request(S.CANCELLED, DISPATCHER, clock(), "k")
    with pytest.raises(IllegalTransition):
        m.request(S.ASSIGNED, DISPATCHER, clock(), "a2")
    assert len(m.history) == 2


def test_failed_job_can_be_requeued_completed_cannot():
    clock = Clock()
    m = assigned(clock)
    m.request(S.FAILED, DRIVER, clock(), "f", reason="nobody home")
    m.request(S.UNASSIGNED, DISPATCHER, clock(), "u")
    assert m.state is S.UNASSIGNED
    m2 = assigned(clock)
    m2.request(S.COMPLETED, DRIVER, clock(), "c")
    with pytest.raises(IllegalTransition):
        m2.request(S.UNASSIGNED, DISPATCHER, clock(), "u")


def test_detected_arrival_then_departure_completes():
    clock = Clock()
    m = assigned(clock)
    out = m.detected(Visit((5_000, 60.0, 24.0)), clock(), route_id="r1")
    assert [(t.to_state, t.at_ms, t.by) for t in out] == [(S.ARRIVED, 5_000, DETECTOR)]
    assert m.detected(Visit((5_000, 60.0, 24.0)), clock()) == []  # nothing new: nothing
    out = m.detected(Visit((5_000, 60.0, 24.0), (9_000, 60.0, 24.0)), clock())
    assert [(t.to_state, t.at_ms) for t in out] == [(S.COMPLETED, 9_000)]


def test_ids_of_detected_transitions_are_deterministic():
    a, b = assigned(Clock()), assigned(Clock(5))
    v = Visit((5_000, 60.0, 24.0))
    assert [t.id for t in a.detected(v, 1)] == [t.id for t in b.detected(v, 99)]


def test_person_completion_wins_and_late_readings_never_undo_it():
    clock = Clock()
    m = assigned(clock)
    m.detected(Visit((5_000, 60.0, 24.0)), clock())
    m.request(S.COMPLETED, DRIVER, clock(), "c")
    # a backfill shows the vehicle never stayed: detection no longer sees an arrival
    assert m.detected(Visit(), clock()) == []
    assert m.detected(Visit((7_000, 60.0, 24.0), (8_000, 60.0, 24.0)), clock()) == []
    assert m.state is S.COMPLETED and m.last.by == DRIVER


def test_person_arrival_wins_over_detection():
    clock = Clock()
    m = assigned(clock)
    m.request(S.ARRIVED, DRIVER, clock(), "arr")
    assert m.detected(Visit((5_000, 60.0, 24.0), (9_000, 60.0, 24.0)), clock()) == []
    assert m.detected(Visit(), clock()) == []
    assert m.state is S.ARRIVED and m.last.by == DRIVER


def test_person_confirms_a_detected_arrival_and_then_owns_it():
    clock = Clock()
    m = assigned(clock)
    m.detected(Visit((5_000, 60.0, 24.0)), clock())
    t = m.request(S.ARRIVED, DRIVER, clock(), "confirm")
    assert t is not None and t.from_state is S.ARRIVED and t.by == DRIVER
    assert m.detected(Visit(), clock()) == []  # a retraction no longer applies
    assert m.state is S.ARRIVED


def test_detection_still_works_after_a_person_set_en_route():
    clock = Clock()
    m = assigned(clock)
    m.request(S.EN_ROUTE, DRIVER, clock(), "go")
    out = m.detected(Visit((5_000, 60.0, 24.0)), clock())
    assert [(t.from_state, t.to_state) for t in out] == [(S.EN_ROUTE, S.ARRIVED)]


def test_backfill_moves_an_announced_arrival_with_a_correcting_transition():
    clock = Clock()
    m = assigned(clock)
    [first] = m.detected(Visit((9_000, 60.0, 24.0)), clock())
    out = m.detected(Visit((4_000, 60.0, 24.0)), clock())
    assert [(t.from_state, t.to_state, t.at_ms, t.corrects) for t in out] == [
        (S.ARRIVED, S.ARRIVED, 4_000, first.id)]
    assert first in m.history  # announced history is kept
    assert m.detected(Visit((4_000, 60.0, 24.0)), clock()) == []


def test_backfill_retracts_detected_arrival_and_completion_back_to_en_route():
    clock = Clock()
    m = assigned(clock)
    m.request(S.EN_ROUTE, DRIVER, clock(), "go")
    arr, done = m.detected(Visit((5_000, 60.0, 24.0), (9_000, 60.0, 24.0)), clock())
    out = m.detected(Visit(), clock())
    assert [(t.from_state, t.to_state, t.corrects) for t in out] == [
        (S.COMPLETED, S.ARRIVED, done.id), (S.ARRIVED, S.EN_ROUTE, out[0].id)]
    assert m.state is S.EN_ROUTE
    # and the vehicle really arrives later: a new arrival
    out = m.detected(Visit((20_000, 60.0, 24.0)), clock())
    assert [(t.to_state, t.at_ms) for t in out] == [(S.ARRIVED, 20_000)]


def test_backfill_moves_a_detected_departure():
    clock = Clock()
    m = assigned(clock)
    _, done = m.detected(Visit((5_000, 60.0, 24.0), (9_000, 60.0, 24.0)), clock())
    out = m.detected(Visit((5_000, 60.0, 24.0), (12_000, 60.0, 24.0)), clock())
    assert [(t.to_state, t.at_ms, t.corrects) for t in out] == [(S.COMPLETED, 12_000, done.id)]
    assert m.detected(Visit((5_000, 60.0, 24.0), (12_000, 60.0, 24.0)), clock()) == []


def test_no_detection_for_unassigned_or_cancelled_jobs():
    clock = Clock()
    m = JobMachine("j1")
    assert m.detected(Visit((5_000, 60.0, 24.0)), clock()) == []
    m.request(S.ASSIGNED, PLANNER, clock(), "a")
    m.request(S.CANCELLED, DISPATCHER, clock(), "k")
    assert m.detected(Visit((5_000, 60.0, 24.0)), clock()) == []


def test_the_same_arrival_after_a_retraction_is_recorded_again():
    """A backfill retracts an arrival, a later one shows it after all: a new transition (a
    store that keys transitions by id must not take it for the first one repeated)."""
    clock = Clock()
    m = assigned(clock)
    [first] = m.detected(Visit((5_000, 60.0, 24.0)), clock())
    m.detected(Visit(), clock())
    [again] = m.detected(Visit((5_000, 60.0, 24.0)), clock())
    assert again.id != first.id and m.state is S.ARRIVED


# --- detection on the vehicle (docs/dispatch.md "Detection on the vehicle", rule 4) --------

VEHICLE = Actor(ActorKind.VEHICLE, "van-1")


def test_the_vehicles_arrival_is_recorded_once_and_then_left_alone_by_the_backend():
    clock = Clock()
    m = assigned(clock)
    [arr] = m.reported("arrival", (5_000, 60.1, 24.9), VEHICLE, "det:k1", clock(), "r1")
    assert (arr.to_state, arr.at_ms, arr.by, arr.lat) == (S.ARRIVED, 5_000, VEHICLE, 60.1)
    again = JobMachine("j1", m.history)  # the same report re-sent (a re-delivered batch)
    assert again.reported("arrival", (5_000, 60.1, 24.9), VEHICLE, "det:k1", clock()) == []
    # the backend's detector, late or disagreeing, never moves or retracts it
    assert m.detected(Visit((4_000, 60.1, 24.9)), clock()) == []
    assert m.detected(Visit(), clock()) == []
    assert m.detected(Visit((5_000, 60.1, 24.9), (9_000, 60.2, 24.9)), clock()) == []
    [done] = m.reported("departure", (9_500, 60.2, 24.9), VEHICLE, "det:k2", clock(), "r1")
    assert (done.from_state, done.to_state, done.at_ms) == (S.ARRIVED, S.COMPLETED, 9_500)
    assert m.detected(Visit((5_000, 60.1, 24.9)), clock()) == []
    assert [t.to_state for t in m.history] == [S.ASSIGNED, S.ARRIVED, S.COMPLETED]


def test_the_first_detection_recorded_wins():
    clock = Clock()
    m = assigned(clock)
    [arr] = m.detected(Visit((5_000, 60.1, 24.9)), clock(), route_id="r1")
    assert arr.by == DETECTOR
    # the vehicle's report of the same visit, arriving after: nothing more
    assert m.reported("arrival", (5_000, 60.1, 24.9), VEHICLE, "det:k1", clock()) == []
    # its departure is new: it completes the job (the backend's detector then leaves it)
    [done] = m.reported("departure", (9_000, 60.2, 24.9), VEHICLE, "det:k2", clock(), "r1")
    assert done.by == VEHICLE
    assert m.detected(Visit((5_000, 60.1, 24.9), (9_100, 60.2, 24.9)), clock()) == []
    assert [t.to_state for t in m.history] == [S.ASSIGNED, S.ARRIVED, S.COMPLETED]


def test_the_vehicles_detection_never_overrides_a_person():
    clock = Clock()
    m = assigned(clock)
    m.request(S.ARRIVED, DRIVER, clock(), "d-arr")
    assert m.reported("arrival", (5_000, 60.1, 24.9), VEHICLE, "det:k1", clock()) == []
    assert m.reported("departure", (9_000, 60.2, 24.9), VEHICLE, "det:k2", clock()) == []
    m.request(S.FAILED, DRIVER, clock(), "d-fail", reason="closed")
    assert m.reported("arrival", (9_500, 60.1, 24.9), VEHICLE, "det:k3", clock()) == []
    assert m.state is S.FAILED and len(m.history) == 3
