"""The customer's view of a tracking link (backend/links/view.py): the vehicle's position only
while it heads to this stop, never near the stop before, never old; the timeline follows
corrections; nothing of other stops in it."""

from __future__ import annotations

import json

import pytest

from backend.dispatch.model import (
    Actor,
    ActorKind,
    Job,
    JobRecord,
    JobState,
    Place,
    Point,
    Route,
    RouteStatus,
    RouteStop,
    Shift,
    Transition,
)
from backend.links.view import (
    LEAVE_RADIUS_M,
    MAX_POSITION_AGE_MS,
    LinkContext,
    Position,
    customer_view,
    first_name,
    heading,
    timeline,
)

S = JobState
T0 = 1_790_000_000_000
M = 1 / 111_195.0  # degrees of latitude per metre
P = {"a": Point(60.10, 24.90), "b": Point(60.20, 24.90), "c": Point(60.30, 24.90)}
DET = Actor(ActorKind.RULE, "detector")


def _route(status=RouteStatus.ACTIVE) -> Route:
    return Route("r1", "van-1", Shift(T0, T0 + 8 * 3_600_000), "dep", "dep",
                 stops=tuple(RouteStop(j) for j in "abc"), status=status, driver_id="d1")


def _ctx(states: dict, job="b", position=None, done_at=None, **kw) -> LinkContext:
    rec = JobRecord(Job(job, Place(P[job], address="Main St 1"), name="Order 7",
                        notes="gate code 1234"), states[job], "r1", T0)
    return LinkContext(rec, [], _route(**kw), states, done_at or {}, P, position=position,
                       driver_name="Aino Virtanen")


def test_no_position_while_an_earlier_stop_is_ahead_or_served():
    near_b = Position(T0 + 60_000, P["b"].lat - 2000 * M, P["b"].lon)
    for a_state in (S.ASSIGNED, S.EN_ROUTE, S.ARRIVED):
        v = customer_view(_ctx({"a": a_state, "b": S.ASSIGNED, "c": S.ASSIGNED},
                               position=near_b), T0 + 61_000)
        assert v["vehicle"] is None and not v["heading_here"]


def test_position_once_every_earlier_stop_is_done():
    pos = Position(T0 + 120_000, P["b"].lat - 2000 * M, P["b"].lon)
    v = customer_view(_ctx({"a": S.COMPLETED, "b": S.ASSIGNED, "c": S.ASSIGNED},
                           position=pos, done_at={"a": T0 + 60_000}), T0 + 121_000)
    assert v["heading_here"]
    assert v["vehicle"] == {"lat": pos.lat, "lon": pos.lon, "time_ms": pos.time_ms}
    # the stop after it never sees the vehicle while it heads to b
    c = customer_view(_ctx({"a": S.COMPLETED, "b": S.ASSIGNED, "c": S.ASSIGNED}, job="c",
                           position=pos, done_at={"a": T0 + 60_000}), T0 + 121_000)
    assert c["vehicle"] is None and not c["heading_here"]


@pytest.mark.parametrize("pos, now, why", [
    (Position(T0 + 50_000, 60.15, 24.90), T0 + 51_000, "taken before it set off here"),
    (Position(T0 + 90_000, P["a"].lat + (LEAVE_RADIUS_M - 20) * M, P["a"].lon),
     T0 + 91_000, "still at the previous customer's door"),
    (Position(T0 + 90_000, 60.15, 24.90), T0 + 90_001 + MAX_POSITION_AGE_MS, "too old"),
])
def test_position_hidden(pos, now, why):
    v = customer_view(_ctx({"a": S.FAILED, "b": S.EN_ROUTE, "c": S.ASSIGNED}, position=pos,
                           done_at={"a": T0 + 60_000}), now)
    assert v["heading_here"] and v["vehicle"] is None, why


def test_no_position_when_route_not_out_or_stop_served():
    pos = Position(T0 + 90_000, 60.15, 24.90)
    for status in (RouteStatus.DRAFT, RouteStatus.DONE, RouteStatus.CANCELLED):
        v = customer_view(_ctx({"a": S.COMPLETED, "b": S.ASSIGNED, "c": S.ASSIGNED},
                               position=pos, status=status), T0 + 91_000)
        assert v["vehicle"] is None
    for b in (S.ARRIVED, S.COMPLETED, S.UNASSIGNED):
        v = customer_view(_ctx({"a": S.COMPLETED, "b": b, "c": S.ASSIGNED}, position=pos),
                          T0 + 91_000)
        assert v["vehicle"] is None


def test_a_cancelled_earlier_stop_is_skipped_but_not_a_place_to_leave():
    h = heading("b", _route(), {"a": S.CANCELLED, "b": S.ASSIGNED}, {"a": T0 + 5}, P)
    assert h is not None and h.previous is None and h.since_ms == T0


def test_nothing_of_the_fleet_in_the_view():
    v = customer_view(_ctx({"a": S.COMPLETED, "b": S.ASSIGNED, "c": S.ASSIGNED},
                           position=Position(T0 + 90_000, 60.15, 24.90),
                           done_at={"a": T0}), T0 + 91_000)
    text = json.dumps(v)
    for secret in ("van-1", "r1", "gate code", "Virtanen", "detector", '"c"', "60.3"):
        assert secret not in text, secret
    assert v["driver"] == "Aino" and v["stop"]["address"] == "Main St 1"


def test_timeline_leaves_out_corrected_transitions():
    ts = [Transition("t1", "b", S.UNASSIGNED, S.ASSIGNED, T0, DET, T0, "r1"),
          Transition("t2", "b", S.ASSIGNED, S.ARRIVED, T0 + 10, DET, T0 + 10, "r1"),
          Transition("t3", "b", S.ARRIVED, S.ASSIGNED, T0 + 20, DET, T0 + 20, "r1",
                     corrects="t2")]
    assert timeline(ts) == [{"state": "assigned", "at_ms": T0},
                            {"state": "assigned", "at_ms": T0 + 20}]


def test_eta_window_only_while_awaited():
    ctx = _ctx({"a": S.COMPLETED, "b": S.EN_ROUTE, "c": S.ASSIGNED})
    ctx.eta, ctx.eta_computed_ms = {"job_id": "b", "eta_ms": T0 + 600_000, "spread_s": 90,
                                    "late": False}, T0
    v = customer_view(ctx, T0)
    assert v["eta"] == {"eta_ms": T0 + 600_000, "earliest_ms": T0 + 510_000,
                        "latest_ms": T0 + 690_000, "computed_ms": T0, "late": False}
    ctx.job = JobRecord(ctx.job.job, S.COMPLETED, "r1", T0)
    assert customer_view(ctx, T0)["eta"] is None


def test_first_name():
    assert first_name("  Aino  Virtanen ") == "Aino" and first_name("") is None
