"""Live ETAs: when they are recomputed (the schedule), the arithmetic along known legs, the
late-risk alert opened and closed through the real store on a fake clock, and the hub's
`eta` message on the route topic."""

from __future__ import annotations

from backend.alerts.evaluate import Episode
from backend.dispatch.eta_service import EtaService
from backend.dispatch.live_eta import (
    ETA_EVERY_MS,
    ETA_MIN_GAP_MS,
    RULE,
    RouteEtaTracker,
    confidence,
    late_risk_changes,
)
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
    TimeWindow,
)
from backend.dispatch.service import Dispatcher
from backend.hub import Hub, Subscriber
from backend.store.base import AlertQuery, StoredReading

S = JobState
ALICE = Actor(ActorKind.PERSON, "alice")
LAT, LON = 60.1699, 24.9384
M = 1 / 111_195.0  # degrees of latitude per metre
T0 = 1_790_000_000_000


def _tracker(windows_b=()) -> RouteEtaTracker:
    jobs = [Job("a", Place(Point(LAT, LON)), service_s=120),
            Job("b", Place(Point(LAT + 0.01, LON)), service_s=60, windows=windows_b)]
    legs = [[0.0, 600.0], [700.0, 0.0]]
    return RouteEtaTracker("r1", "v1", jobs, legs, "test legs")


def test_recomputed_only_when_due():
    tr = _tracker()
    assert tr.due(T0, LAT, LON)
    tr.compute(T0, LAT, LON, T0, lambda lat, lon, job: 300.0)
    assert not tr.due(T0 + ETA_MIN_GAP_MS - 1, LAT + 1000 * M, LON)  # never this often
    assert not tr.due(T0 + ETA_MIN_GAP_MS, LAT + 100 * M, LON)  # barely moved, not yet time
    assert tr.due(T0 + ETA_MIN_GAP_MS, LAT + 400 * M, LON)  # moved along: sooner
    assert tr.due(T0 + ETA_EVERY_MS, LAT, LON)  # time
    tr.set_state("a", S.COMPLETED, T0 + 1)
    assert tr.due(T0 + ETA_MIN_GAP_MS, LAT, LON)  # a stop changed


def test_etas_walk_the_kept_legs_and_skip_done_stops():
    tr = _tracker()
    first = tr.compute(T0, LAT, LON, T0 + 2_000, lambda lat, lon, job: 300.0)
    a, b = first.eta.stops
    assert a.arrival_ms == T0 + 2_000 + 300_000
    assert a.departure_ms == a.arrival_ms + 120_000
    assert b.arrival_ms == a.departure_ms + 600_000  # the kept a → b leg
    msg = first.message()
    assert msg["route_id"] == "r1" and "test legs" in msg["basis"]
    assert [s["job_id"] for s in msg["stops"]] == ["a", "b"]
    assert msg["stops"][0]["confidence"] > msg["stops"][1]["confidence"]  # further: less sure
    # arrived at a at T0+10 s: busy for its service, then the a → b leg
    tr.set_state("a", S.ARRIVED, T0 + 10_000)
    busy = tr.compute(T0 + 20_000, LAT, LON, T0 + 20_000, lambda *a: 1e9)
    (b,) = busy.eta.stops
    assert b.arrival_ms == T0 + 10_000 + 120_000 + 600_000
    tr.set_state("a", S.COMPLETED, T0 + 130_000)
    legs_to = []
    after = tr.compute(T0 + 140_000, LAT, LON, T0 + 140_000,
                       lambda lat, lon, job: legs_to.append(job.id) or 50.0)
    assert legs_to == ["b"] and after.eta.stops[0].arrival_ms == T0 + 140_000 + 50_000


def test_confidence_falls_with_the_spread():
    assert confidence(60) == 0.83 and confidence(300) == 0.5 and confidence(900) == 0.25


def test_late_risk_pure_open_and_close():
    tr = _tracker(windows_b=(TimeWindow(T0, T0 + 600_000),))
    live = tr.compute(T0, LAT, LON, T0, lambda *a: 300.0)  # b at T0+17 min: late
    (opened,) = late_risk_changes(tr, live, {}, T0)
    assert (opened.rule, opened.subject, opened.end_ms) == (RULE, "b", None)
    assert opened.detail["late_s"] == (live.eta.stops[1].arrival_ms - T0 - 600_000) // 1000


async def _setup(store, clock):
    published, alerts = [], []
    etas = EtaService(store, publish=lambda *m: published.append(m),
                      publish_alert=alerts.append, clock=clock)
    hub = Hub()
    sub = Subscriber()
    hub.add(sub)
    hub.subscribe(sub, "route:r1")

    def publish(field, payload, vehicle, route_id=None):
        hub.publish_dispatch(field, payload, vehicle, route_id)
        if field == "eta":
            published.append(payload)

    etas.publish = publish
    d = Dispatcher(store, publish, dwell_s=30, etas=etas)
    await etas.start()
    # b's window closes 20 minutes after T0; the vehicle starts 10 km south of it
    await d.add_jobs([Job("a", Place(Point(LAT, LON))),
                      Job("b", Place(Point(LAT + 1000 * M, LON)),
                          windows=(TimeWindow(T0, T0 + 1_200_000),))], T0)
    route = Route("r1", "v1", Shift(T0, T0 + 36_000_000), "dep", "dep",
                  stops=(RouteStop("a"), RouteStop("b")), status=RouteStatus.DISPATCHED)
    await d.save_route(route, None, ALICE, T0)
    return d, etas, sub, published, alerts


def _pos(seq, t, metres_north):
    return StoredReading("v1", 1, seq, t, "pos", lat=LAT + metres_north * M, lon=LON,
                         received_ms=t)


async def _drive(store, d, readings, now_ms):
    await store.write(readings, [])
    await d.on_committed(readings, now_ms)


async def _open_late(store):
    return [(a.subject, a.detail.get("route_id"))
            for a in await store.list_alerts(AlertQuery(rule=RULE, state="open"))]


async def test_late_risk_alert_opens_and_closes_when_back_in_window(any_store):
    now = [T0]
    d, etas, sub, published, alerts = await _setup(any_store, lambda: now[0])
    # far south (25 km straight line ≈ 65 min): b's ETA is past its window
    await _drive(any_store, d, [_pos(1, T0, -25_000)], T0)
    assert await _open_late(any_store) == [("b", "r1")]
    assert alerts[-1]["rule"] == RULE and alerts[-1]["subject"] == "b"
    # 2 s later, even far closer: not due yet, nothing recomputed
    n = len(published)
    await _drive(any_store, d, [_pos(2, T0 + 2_000, -500)], T0 + 2_000)
    assert len(published) == n
    # 40 s later near a: b's ETA is back inside its window → closed
    await _drive(any_store, d, [_pos(3, T0 + 40_000, -500)], T0 + 40_000)
    assert await _open_late(any_store) == []
    closed = await any_store.list_alerts(AlertQuery(rule=RULE))
    assert [(a.state, a.end_ms, a.detail["closed_because"]) for a in closed] == [
        ("closed", T0 + 40_000, "ETA back within the window")]
    # the hub's route topic got every computation, with basis and confidence
    etas_on_topic = [m["eta"] for m in sub.queue if "eta" in m]
    assert [e["position_ms"] for e in etas_on_topic] == [T0, T0 + 40_000]
    assert all(m["topic"] == "route:r1" for m in sub.queue if "eta" in m)
    stop = etas_on_topic[-1]["stops"][-1]
    assert stop["job_id"] == "b" and not stop["late"] and 0 < stop["confidence"] < 1
    assert "straight line" in etas_on_topic[-1]["basis"]


async def test_late_risk_alert_closes_when_the_stop_is_done(any_store):
    now = [T0]
    d, etas, sub, published, alerts = await _setup(any_store, lambda: now[0])
    await _drive(any_store, d, [_pos(1, T0, -25_000)], T0)
    assert await _open_late(any_store) == [("b", "r1")]
    await d.change_state("b", S.SKIPPED, ALICE, T0 + 5_000, "skip-b")
    assert await _open_late(any_store) == []
    (a,) = await any_store.list_alerts(AlertQuery(rule=RULE))
    assert a.detail["closed_because"] == "stop skipped" and a.end_ms == T0 + 5_000
    # taking the route off the road closes what is open (none left) and stops the ETAs
    n = len(published)
    route = await any_store.dispatch_route("r1")
    await d.save_route(Route(route.id, route.vehicle_id, route.shift, "dep", "dep",
                             stops=route.stops, status=RouteStatus.CANCELLED),
                       route.version, ALICE, T0 + 6_000)
    await _drive(any_store, d, [_pos(2, T0 + 60_000, -25_000)], T0 + 60_000)
    assert len(published) == n and etas.tracker("v1") is None


async def test_a_vehicle_moved_to_another_process_has_its_alert_closed_there(any_store):
    """Two gateway processes on one store: the late-risk alert opened through one is closed
    through the other once the vehicle reconnected there (Gateway.register → forget reads its
    open alerts again; without it the other process never knew of the alert)."""
    now = [T0]
    d, etas, sub, published, alerts = await _setup(any_store, lambda: now[0])
    other_etas = EtaService(any_store, clock=lambda: now[0])
    other = Dispatcher(any_store, dwell_s=30, etas=other_etas)
    await other_etas.start()
    await other.start()  # started before the alert: it has none open
    await _drive(any_store, d, [_pos(1, T0, -25_000)], T0)
    assert await _open_late(any_store) == [("b", "r1")]
    other.forget("v1")  # the vehicle reconnected to the other process
    await _drive(any_store, other, [_pos(2, T0 + 40_000, -500)], T0 + 40_000)
    assert await _open_late(any_store) == []
    assert other.stats["eta_failures"] == 0


def test_episode_shape_is_the_alert_engines():
    # late-risk alerts are Episodes of the alert engine (stored, acknowledged, listed alike)
    tr = _tracker(windows_b=(TimeWindow(T0, T0 + 1),))
    live = tr.compute(T0, LAT, LON, T0, lambda *a: 300.0)
    assert all(isinstance(e, Episode) for e in late_risk_changes(tr, live, {}, T0))
