"""The dispatch vocabulary refuses what cannot be planned, with the field named."""

import pytest

from backend.dispatch.model import (
    Actor,
    ActorKind,
    Amounts,
    Driver,
    Job,
    JobKind,
    JobState,
    Place,
    Point,
    Route,
    RouteStop,
    Shift,
    TimeWindow,
    Transition,
    check_pairs,
)

HERE = Place(Point(60.17, 24.94))


@pytest.mark.parametrize("lat,lon", [(91, 0), (0, 181), (float("nan"), 0), (True, 0), ("1", 2)])
def test_point_out_of_range(lat, lon):
    with pytest.raises(ValueError, match="lat|lon"):
        Point(lat, lon)


def test_window_end_before_start_and_overlap():
    with pytest.raises(ValueError, match="end is before its start"):
        TimeWindow(10, 5)
    with pytest.raises(ValueError, match="overlap"):
        Job("j", HERE, windows=(TimeWindow(0, 10), TimeWindow(10, 20)))
    j = Job("j", HERE, windows=(TimeWindow(30, 40), TimeWindow(0, 10)))
    assert [w.start_ms for w in j.windows] == [0, 30]


@pytest.mark.parametrize("kw,field", [
    ({"service_s": -1}, "service_s"), ({"priority": 101}, "priority"),
    ({"skills": {"a,b"}}, "skill"), ({"kind": JobKind.PICKUP}, "pair"),
    ({"pair": "x"}, "pair"), ({"id": "has space"}, "id"), ({"id": "a/b"}, "id"), ({"id": ""}, "id"),
    ({"id": "import"}, "reserved"),  # /api/jobs/import is the import, never a job's URL
])
def test_job_refusals_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        Job(**{"id": "j", "place": HERE, **kw})


def test_amounts_add_fit_vector():
    a = Amounts.of(kg=100, pallets=1) + Amounts.of(kg=50)
    assert a.as_dict() == {"kg": 150, "pallets": 1}
    assert a.fits_in(Amounts.of(kg=150, pallets=2))
    assert not a.fits_in(Amounts.of(kg=1000))  # no pallets dimension: 0
    assert a.vector(["pallets", "m3", "kg"]) == [1, 0, 150]
    with pytest.raises(ValueError, match="whole number"):
        Amounts.of(kg=-1)
    with pytest.raises(ValueError, match="sorted"):
        Amounts((("kg", 1), ("a", 2)))


def test_pairs_checked_across_jobs():
    pick = Job("p", HERE, kind=JobKind.PICKUP, pair="d", demand=Amounts.of(kg=5))
    drop = Job("d", HERE, kind=JobKind.DELIVERY, pair="p", demand=Amounts.of(kg=5))
    assert check_pairs([pick, drop]) == []
    assert check_pairs([pick]) == ["p: its pair d does not exist"]
    wrong = Job("d", HERE, kind=JobKind.PICKUP, pair="p", demand=Amounts.of(kg=5))
    assert "p: d is not its delivery" in check_pairs([pick, wrong])
    heavier = Job("d", HERE, kind=JobKind.DELIVERY, pair="p", demand=Amounts.of(kg=6))
    assert any("different demand" in p for p in check_pairs([pick, heavier]))


def test_route_and_shift_and_driver():
    with pytest.raises(ValueError, match="shift"):
        Shift(10, 10)
    with pytest.raises(ValueError, match="twice"):
        Route("r", "v", Shift(0, 1000), "d", "d", stops=(RouteStop("a"), RouteStop("a")))
    with pytest.raises(ValueError, match="display_name"):
        Driver("drv", "  ")
    assert Driver("drv", "Aino", skills=["adr"]).skills == frozenset({"adr"})


def test_states_and_transition():
    assert {s for s in JobState if s.terminal} == {JobState.COMPLETED, JobState.FAILED,
                                                   JobState.SKIPPED, JobState.CANCELLED}
    assert {s for s in JobState if s.started} == {JobState.EN_ROUTE, JobState.ARRIVED}
    with pytest.raises(ValueError, match="both or neither"):
        Transition("t", "j", JobState.ASSIGNED, JobState.EN_ROUTE, 1, Actor(ActorKind.RULE,
                   "planner"), 1, lat=1.0)
