"""The dispatch tables on SQLite and PostgreSQL: idempotent writes, all-or-nothing imports,
stale transitions and route versions refused, visibility by vehicle."""

import pytest

from backend.dispatch.jobstate import JobMachine
from backend.dispatch.model import (
    Actor,
    ActorKind,
    Amounts,
    Depot,
    Driver,
    FleetVehicle,
    Job,
    JobState,
    Place,
    Point,
    Route,
    RouteStop,
    Shift,
    VehicleType,
)
from backend.dispatch.storage import JobExists, JobQuery, StaleState, StaleVersion

S = JobState
PLANNER = Actor(ActorKind.RULE, "planner")
HERE = Place(Point(60.17, 24.94))


def jobs(*ids: str) -> list[Job]:
    return [Job(i, HERE, demand=Amounts.of(kg=len(i))) for i in ids]


def route(rid: str = "r1", vehicle: str = "v1", stops=("a", "b")) -> Route:
    return Route(rid, vehicle, Shift(1_000, 100_000), "dep", "dep", Amounts.of(kg=100),
                 stops=tuple(RouteStop(s) for s in stops))


def assign(job_ids, rid: str, now: int, history=None):
    return [JobMachine(j, (history or {}).get(j, ())).request(
        S.ASSIGNED, PLANNER, now, f"as-{rid}-{j}", route_id=rid) for j in job_ids]


async def test_catalogues_round_trip_and_replace(any_store):
    s = any_store
    vt = VehicleType("van", "Van", capacity=Amounts.of(kg=800, pallets=2),
                     skills=frozenset({"fridge"}))
    assert await s.put_catalogue(vt, 1) is True
    assert await s.put_catalogue(vt, 2) is False  # replaced, not created
    await s.put_catalogue(Driver("d1", "Aino", account_id="acc-1"), 1)
    await s.put_catalogue(Depot("dep", "Depot", HERE), 1)
    assert await s.catalogue("vehicle_types") == [vt]
    assert [d.account_id for d in await s.catalogue("drivers")] == ["acc-1"]
    assert await s.delete_catalogue("vehicle_types", "van") is True
    assert await s.delete_catalogue("vehicle_types", "van") is False
    await s.put_dispatch_vehicle(FleetVehicle("v1", "van", "dep"), 1)
    await s.put_dispatch_vehicle(FleetVehicle("v1", "van", None), 2)
    assert await s.dispatch_vehicles() == [FleetVehicle("v1", "van", None)]


async def test_add_jobs_is_idempotent_and_all_or_nothing(any_store):
    s = any_store
    assert await s.add_jobs(jobs("a", "b"), 10) == ["a", "b"]
    assert await s.add_jobs(jobs("a", "b", "c"), 11) == ["c"]  # a repeat adds only the new
    changed = [Job("b", HERE, demand=Amounts.of(kg=99)), *jobs("d")]
    with pytest.raises(JobExists) as e:
        await s.add_jobs(changed, 12)
    assert e.value.ids == ["b"]
    assert await s.job("d") is None  # nothing of the refused import
    rec = await s.job("a")
    assert rec.state is S.UNASSIGNED and rec.job == jobs("a")[0] and rec.updated_ms == 10


async def test_listing_filters_and_pages(any_store):
    s = any_store
    await s.add_jobs(jobs("a", "B", "c", "d"), 1)
    await s.put_dispatch_route(route("r1", "v1", ("a",)), None, 2, assign(["a"], "r1", 2))
    await s.put_dispatch_route(route("r2", "v2", ("c",)), None, 2, assign(["c"], "r2", 2))
    ids = lambda rs: [r.job.id for r in rs]  # noqa: E731
    assert ids(await s.jobs(JobQuery())) == ["B", "a", "c", "d"]  # bytewise in both stores
    assert ids(await s.jobs(JobQuery(states=(S.ASSIGNED,)))) == ["a", "c"]
    assert ids(await s.jobs(JobQuery(route_id="r2"))) == ["c"]
    assert ids(await s.jobs(JobQuery(vehicles=frozenset({"v1"})))) == ["B", "a", "d"]
    assert ids(await s.jobs(JobQuery(after="a", limit=1))) == ["c"]
    assert (await s.job("a")).route_id == "r1"


async def test_transitions_idempotent_and_stale_refused(any_store):
    s = any_store
    await s.add_jobs(jobs("a"), 1)
    m = JobMachine("a")
    t1 = m.request(S.ASSIGNED, PLANNER, 5, "t1", route_id="r1")
    assert await s.record_transitions([t1]) == [t1]
    assert await s.record_transitions([t1]) == []  # a repeat records nothing
    other = JobMachine("a").request(S.CANCELLED, PLANNER, 6, "t2")  # decided on old state
    with pytest.raises(StaleState, match="job a is assigned"):
        await s.record_transitions([other])
    assert await s.transitions("a") == [t1]
    rec = await s.job("a")
    assert (rec.state, rec.route_id, rec.updated_ms) == (S.ASSIGNED, "r1", 5)
    t3 = m.request(S.UNASSIGNED, PLANNER, 7, "t3")
    await s.record_transitions([t3])
    assert (await s.job("a")).route_id is None


async def test_route_versions(any_store):
    s = any_store
    await s.add_jobs(jobs("a", "b"), 1)
    r = await s.put_dispatch_route(route(), None, 2, assign(["a", "b"], "r1", 2))
    assert r.version == 1
    assert (await s.put_dispatch_route(route(), None, 2)).version == 1  # the same creation again
    with pytest.raises(StaleVersion, match="version 1"):
        await s.put_dispatch_route(route(stops=("b",)), None, 3)  # created again: stale
    r2 = await s.put_dispatch_route(route(stops=("b", "a")), 1, 4)
    assert r2.version == 2 and r2.job_ids == ("b", "a")
    with pytest.raises(StaleVersion):
        await s.put_dispatch_route(route(stops=("a",)), 1, 5)
    assert await s.dispatch_route("r1") == r2
    assert [x.id for x in await s.dispatch_routes(("draft",), "v1")] == ["r1"]
    assert await s.dispatch_routes(("active",)) == []


async def test_route_with_a_stale_transition_stores_nothing(any_store):
    s = any_store
    await s.add_jobs(jobs("a"), 1)
    bad = JobMachine("a").request(S.ASSIGNED, PLANNER, 2, "x", route_id="r1")
    await s.record_transitions([JobMachine("a").request(S.CANCELLED, PLANNER, 2, "k")])
    with pytest.raises(StaleState):
        await s.put_dispatch_route(route(stops=("a",)), None, 3, [bad])
    assert await s.dispatch_route("r1") is None


async def test_proposals_kept_newest_open_and_closed_once(any_store):
    from backend.dispatch.storage import StoredProposal

    def prop(i: int) -> StoredProposal:
        return StoredProposal(f"p{i}", 1_000 + i, f"v{i}", "open", "on demand",
                              {"n": i, "routes": {"v1": ["a", "b"]}})

    assert await any_store.put_proposal(prop(1), keep_open=2) == []
    assert await any_store.put_proposal(prop(2), keep_open=2) == []
    assert await any_store.put_proposal(prop(2), keep_open=2) == []  # the same again
    assert await any_store.put_proposal(prop(3), keep_open=2) == ["p1"]  # oldest open goes
    assert [p.id for p in await any_store.proposals("open")] == ["p3", "p2"]
    got = await any_store.proposal("p2")
    assert got.body == {"n": 2, "routes": {"v1": ["a", "b"]}} and got.based_on_version == "v2"
    assert await any_store.close_proposal("p2", "approved", "ann", 5_000)
    assert not await any_store.close_proposal("p2", "approved", "bob", 5_001)  # once only
    got = await any_store.proposal("p2")
    assert (got.status, got.closed_by, got.closed_ms) == ("approved", "ann", 5_000)
    assert (await any_store.proposal("p1")).status == "dropped"
    assert [p.id for p in await any_store.proposals()] == ["p3", "p2", "p1"]
    assert await any_store.proposal("nope") is None
