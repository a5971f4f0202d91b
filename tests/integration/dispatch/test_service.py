"""The dispatch service on real stores: routes assign and unassign jobs without losing what
is planned, positions committed through the store move jobs to arrived and completed, and
the same positions delivered late and shuffled give the same transitions."""

import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backend.dispatch.jobstate import DETECTOR, IllegalTransition
from backend.dispatch.model import (
    Actor,
    ActorKind,
    Job,
    JobState,
    Place,
    Point,
    Route,
    RouteStatus,
    RouteStop,
    Shift,
)
from backend.dispatch.service import Dispatcher, DispatchError
from backend.dispatch.storage import StaleVersion
from backend.store.base import StoredReading
from backend.store.sqlite import SqliteStore
from geostream.clock import wall_ms

S = JobState
ALICE = Actor(ActorKind.PERSON, "alice")
DRIVER = Actor(ActorKind.PERSON, "driver-1")
LAT, LON = 60.1699, 24.9384
M = 1 / 111_195.0  # degrees of latitude per metre
STOP_A = Point(LAT, LON)
STOP_B = Point(LAT + 1000 * M, LON)
# Device times of the drives: counted from two hours before this run's hour, because
# PostgreSQL stores readings only within its partition window around today (docs/persistence.md)
HOUR_MS = 3_600_000
T0 = (wall_ms() // HOUR_MS - 2) * HOUR_MS


def route(stops=("a", "b"), status=RouteStatus.DISPATCHED, rid="r1", vehicle="v1") -> Route:
    return Route(rid, vehicle, Shift(T0 + 1_000, T0 + 10_000_000), "dep", "dep",
                 stops=tuple(RouteStop(s) for s in stops), status=status)


def pos(seq: int, t: int, metres_north: float, vehicle: str = "v1") -> StoredReading:
    return StoredReading(vehicle, 1, seq, T0 + t, "pos", lat=LAT + metres_north * M, lon=LON,
                         received_ms=1)


class Events:
    def __init__(self):
        self.seen = []

    def __call__(self, field, payload, vehicle, route_id=None):
        self.seen.append((field, payload, vehicle, route_id))


async def setup(store, events=None) -> Dispatcher:
    d = Dispatcher(store, events, dwell_s=30)
    await d.add_jobs([Job("a", Place(STOP_A)), Job("b", Place(STOP_B)), Job("c", Place(STOP_A))],
                     0)
    await d.save_route(route(), None, ALICE, 500)
    return d


async def test_route_assigns_and_unassigns_and_keeps_started(any_store):
    events = Events()
    d = await setup(any_store, events)
    assert [(await any_store.job(j)).state for j in "abc"] == [S.ASSIGNED, S.ASSIGNED,
                                                               S.UNASSIGNED]
    await d.change_state("a", S.EN_ROUTE, DRIVER, 600, "go-a")
    with pytest.raises(DispatchError, match="job a is en_route: it stays on its route"):
        await d.save_route(route(("b",)), 1, ALICE, 700)
    r2 = await d.save_route(route(("a", "c")), 1, ALICE, 700)
    assert r2.version == 2
    assert [(await any_store.job(j)).state for j in "abc"] == [S.EN_ROUTE, S.UNASSIGNED,
                                                               S.ASSIGNED]
    with pytest.raises(StaleVersion):
        await d.save_route(route(("a",)), 1, ALICE, 800)
    with pytest.raises(DispatchError, match="c is assigned on route r1"):
        await d.save_route(route(("c",), rid="r2", vehicle="v2"), None, ALICE, 800)
    with pytest.raises(DispatchError, match="unknown job 'zz'"):
        await d.save_route(route(("zz",), rid="r3"), None, ALICE, 800)
    fields = [e[0] for e in events.seen]
    assert "route" in fields and "transition" in fields and fields.count("job") == 3


async def test_cancel_and_illegal(any_store):
    d = await setup(any_store)
    await d.change_state("c", S.CANCELLED, ALICE, 600, "k")
    assert await d.change_state("c", S.CANCELLED, ALICE, 601, "k") is not None  # same id
    with pytest.raises(IllegalTransition):
        await d.change_state("c", S.ASSIGNED, ALICE, 602, "again")
    with pytest.raises(DispatchError, match="unknown job"):
        await d.change_state("nope", S.CANCELLED, ALICE, 602, "x")


async def test_positions_arrive_and_complete_and_person_wins(any_store):
    d = await setup(any_store)
    drive = [pos(1, 10_000, 300), pos(2, 20_000, 10), pos(3, 40_000, 5), pos(4, 60_000, 5),
             pos(5, 70_000, 500), pos(6, 110_000, 500),  # left a
             pos(7, 120_000, 1000), pos(8, 160_000, 1000)]  # at b
    await any_store.write(drive, [])
    await d.on_committed(drive, T0 + 200_000)
    a = await any_store.transitions("a")
    assert [(t.to_state, t.at_ms, t.by) for t in a[1:]] == [
        (S.ARRIVED, T0 + 20_000, DETECTOR), (S.COMPLETED, T0 + 70_000, DETECTOR)]
    assert (await any_store.job("b")).state is S.ARRIVED
    # the driver says b failed; later positions leaving b change nothing
    await d.change_state("b", S.FAILED, DRIVER, T0 + 200_001, "fail-b", reason="closed")
    late = [pos(9, 170_000, 3000), pos(10, 260_000, 3000)]
    await any_store.write(late, [])
    await d.on_committed(late, T0 + 300_000)
    assert (await any_store.job("b")).state is S.FAILED
    assert d.stats["failures"] == 0


async def test_restart_rebuilds_from_the_store_without_repeating(any_store):
    d = await setup(any_store)
    drive = [pos(1, 10_000, 0), pos(2, 50_000, 0)]
    await any_store.write(drive, [])
    await d.on_committed(drive, T0 + 60_000)
    n = len(await any_store.transitions("a"))
    fresh = Dispatcher(any_store, dwell_s=30)
    await fresh.start()
    more = [pos(3, 55_000, 0)]
    await any_store.write(more, [])
    await fresh.on_committed(more, T0 + 70_000)  # older than nothing it has: replays the shift
    assert len(await any_store.transitions("a")) == n
    assert (await any_store.job("a")).state is S.ARRIVED


async def test_a_vehicle_back_from_another_process_resumes_from_the_store(any_store):
    """Two gateway processes on one store: the vehicle arrives at a through one, drives on to
    b through the other, and comes back: the first starts its track again from the store
    (Gateway.register → forget), so b's arrival, seen by the other, is not decided twice."""
    here = await setup(any_store)
    there = Dispatcher(any_store, dwell_s=30)
    await there.start()
    first = [pos(1, 10_000, 0), pos(2, 50_000, 0)]  # 40 s at a
    await any_store.write(first, [])
    await here.on_committed(first, T0 + 60_000)
    there.forget("v1")
    away = [pos(3, 60_000, 500), pos(4, 100_000, 1000), pos(5, 140_000, 1000)]  # on to b
    await any_store.write(away, [])
    await there.on_committed(away, T0 + 150_000)
    assert (await any_store.job("b")).state is S.ARRIVED
    replays = here.stats["replays"]
    here.forget("v1")
    back = [pos(6, 150_000, 1000), pos(7, 160_000, 1000)]
    await any_store.write(back, [])
    await here.on_committed(back, T0 + 170_000)
    assert here.stats["replays"] == replays + 1 and here.stats["failures"] == 0
    assert [t.to_state for t in await any_store.transitions("b")].count(S.ARRIVED) == 1
    assert (await any_store.job("a")).state is S.COMPLETED


async def test_a_vehicle_without_a_route_is_not_looked_at(any_store):
    d = await setup(any_store)
    other = [pos(1, 10_000, 0, vehicle="v9"), pos(2, 60_000, 0, vehicle="v9")]
    await any_store.write(other, [])
    await d.on_committed(other, T0 + 70_000)
    assert d.stats["replays"] == 0 and (await any_store.job("a")).state is S.ASSIGNED


# --- backfill invariance through the store -----------------------------------------------------

SPOTS = [0, 20, 60, 300, 1000, 1010]


async def _outcome(batches, seed: int) -> list:
    store = SqliteStore(":memory:")
    await store.open()
    try:
        d = await setup(store)
        for batch in batches:
            await store.write(batch, [])
            await d.on_committed(batch, T0 + 10**9)
        assert d.stats["failures"] == 0
        out = []
        for j in "ab":
            # what stands: the state, and when the vehicle arrived or left if it did (a late
            # reading may have corrected an announced arrival on the way: allowed)
            last = (await store.transitions(j))[-1]
            out.append((last.to_state, last.at_ms if last.to_state in (S.ARRIVED, S.COMPLETED)
                        else None))
        return out
    finally:
        await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from([0, 10_000, 20_000, 45_000]),
                                st.sampled_from(SPOTS)), min_size=1, max_size=40),
       seed=st.integers(0, 2**16))
# an arrival announced, retracted by a late reading, then shown again by a later one
@example(steps=[(0, 0), (45_000, 0), (0, 60), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0)], seed=185)
async def test_late_shuffled_batches_end_in_the_in_order_states(steps, seed):
    t, readings = 1_000, []
    for i, (dt, m) in enumerate(steps):
        t += dt
        readings.append(pos(i + 1, t, m))
    rng = random.Random(seed)
    shuffled = readings[:]
    rng.shuffle(shuffled)
    cuts = sorted(rng.sample(range(1, len(readings)), min(5, len(readings) - 1)))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(readings)], strict=True)]
    assert await _outcome(batches, seed) == await _outcome([readings], seed)


async def test_a_stop_given_as_a_geofence_is_detected_by_its_shape(any_store):
    """The job's radius (5 m) would never be entered; its geofence (a 300 m circle) is."""
    d = Dispatcher(any_store, dwell_s=30)
    await any_store.put_geofence("yard", "Yard", {"type": "Polygon", "coordinates": [[
        [LON - 0.01, LAT - 0.01], [LON + 0.01, LAT - 0.01], [LON + 0.01, LAT + 0.01],
        [LON - 0.01, LAT - 0.01]]]}, circle={"center": [LON, LAT], "radius_m": 300})
    await d.add_jobs([Job("y", Place(STOP_A, radius_m=5, geofence_id="yard"))], 0)
    await d.save_route(route(("y",)), None, ALICE, 500)
    drive = [pos(1, 10_000, 200), pos(2, 50_000, 250)]  # inside the yard, far from the point
    await any_store.write(drive, [])
    await d.on_committed(drive, T0 + 60_000)
    assert (await any_store.job("y")).state is S.ARRIVED


def detection(kind: str, job: str, t: int, rid: str = "r1") -> dict:
    from agent.stops import DEVICE_ID, KIND_OF, detection_key

    return {"key": detection_key(rid, job, kind, T0 + t), "device_id": DEVICE_ID,
            "device_seq": 1, "kind": KIND_OF[kind], "route_id": rid, "job_id": job,
            "at_ms": T0 + t, "lat": LAT, "lon": LON, "decided_ms": T0 + t + 30_000}


async def test_the_vehicles_detection_and_the_backends_make_one_transition(any_store):
    """docs/dispatch.md rule 4 on real stores: the vehicle's report first, then the backend's
    detector over the same fixes, then the report re-sent: one arrival, one completion."""
    d = await setup(any_store)
    assert await d.vehicle_detected("v1", detection("arrival", "a", 20_000), T0 + 60_000) \
        == "recorded"
    drive = [pos(1, 10_000, 300), pos(2, 20_000, 10), pos(3, 40_000, 5), pos(4, 60_000, 5)]
    await any_store.write(drive, [])
    await d.on_committed(drive, T0 + 70_000)
    assert await d.vehicle_detected("v1", detection("arrival", "a", 20_000), T0 + 80_000) \
        == "already"
    # the backend's detector sees the departure first: the vehicle's made the arrival, so
    # it leaves the job to the vehicle, whose departure completes it
    gone = [pos(5, 70_000, 500), pos(6, 110_000, 500)]
    await any_store.write(gone, [])
    await d.on_committed(gone, T0 + 120_000)
    assert (await any_store.job("a")).state is S.ARRIVED
    assert await d.vehicle_detected("v1", detection("departure", "a", 70_000), T0 + 130_000) \
        == "recorded"
    vehicle = Actor(ActorKind.VEHICLE, "v1")
    assert [(t.to_state, t.at_ms, t.by) for t in await any_store.transitions("a")][1:] == [
        (S.ARRIVED, T0 + 20_000, vehicle), (S.COMPLETED, T0 + 70_000, vehicle)]


async def test_a_detection_for_another_vehicles_route_or_job_is_refused(any_store):
    d = await setup(any_store)
    assert (await d.vehicle_detected("v2", detection("arrival", "a", 20_000), T0)).startswith(
        "refused: route r1 is not vehicle v2's")
    assert (await d.vehicle_detected("v1", detection("arrival", "c", 20_000), T0)).startswith(
        "refused: job c is not on route r1")
    assert (await d.vehicle_detected("v1", {"kind": "arrival-detected"}, T0)).startswith(
        "refused: key")
    assert (await d.vehicle_detected("v1", detection("arrival", "a", 20_000), T0 - 86_400_000
                                     )).startswith("refused: decided_ms")
    assert [t.to_state for t in await any_store.transitions("a")] == [S.ASSIGNED]
