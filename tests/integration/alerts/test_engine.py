"""The engine on real stores: backfill in any order equals in-order delivery, re-delivery and
restarts are idempotent, clock-driven rules, store filters. SQLite and PostgreSQL."""

import random
from dataclasses import replace

from backend.alerts import AlertEngine, parse_rules
from backend.store.base import AlertQuery
from geostream.clock import wall_ms
from tests.integration.alerts.helpers import V, can, evt, pos

DEPOT = {"type": "Polygon", "coordinates": [[[9.98, 53.54], [10.0, 53.54], [10.0, 53.56],
                                              [9.98, 53.56], [9.98, 53.54]]]}
RULES = parse_rules({"geofence": {"dwell_s": 5},
                     "signal": [{"name": "coolant-high", "signal": "EngCoolantTemp",
                                 "above": 105, "duration_s": 10}]})
# the engine's clock: this hour, long after the hand-timed drives (1970) and inside the
# PostgreSQL store's window for the tests that write a reading at it
NOW = wall_ms() // 3_600_000 * 3_600_000


def drive():
    """20 minutes, one position per second: outside the depot, into it at 300 s, out at 600 s;
    overspeed 100-160 s and 700-800 s; coolant high 400-500 s; a journal drop; a DTC. Numbered
    in time order, as the agent's journal numbers what it records."""
    out = []
    for t in range(1200):
        speed = 100 if 100 <= t < 160 or 700 <= t < 800 else 50
        lat = 53.55 if 300 <= t < 600 else 53.58
        out.append(pos(0, t, speed, lat))
        if t % 5 == 0:
            out.append(can(0, t + 0.5, EngCoolantTemp=110 if 400 <= t < 500 else 90))
    out += [evt(0, 250, "journal-dropped", reason="full", counts={"pos": 9}),
            evt(0, 900, "dtc", active=[{"spn": 110, "fmi": 0}]),
            evt(0, 1000, "dtc", active=[])]
    out.sort(key=lambda r: r.time_ms)  # stable: an event after its second's position
    return [replace(r, seq=seq) for seq, r in enumerate(out, start=1)]


EXPECTED = {  # (rule, subject, start s, end s) — hand-derived from drive()
    ("overspeed", "", 100, 160), ("overspeed", "", 700, 800),
    ("coolant-high", "", 400.5, 500.5), ("geofence-enter", "depot", 300, 300),
    ("geofence-exit", "depot", 600, 600), ("journal-dropped", "7/302", 250, 250),
    ("dtc", "SPN110-FMI0", 900, 1000)}


async def deliver(store, engine, batches, now=NOW):
    for batch in batches:
        await store.write(batch, [])
        await engine.on_committed(batch, now)


async def alert_spans(store):
    alerts = await store.list_alerts(AlertQuery(limit=1000))
    return {(a.rule, a.subject, a.start_ms / 1000, None if a.end_ms is None else a.end_ms / 1000)
            for a in alerts}


async def new_engine(store, published=None):
    await store.put_geofence("depot", "Depot", DEPOT)
    engine = AlertEngine(store, RULES, (published.append if published is not None else None))
    await engine.start(NOW)
    return engine


async def test_in_order_delivery_gives_the_expected_alerts(any_store):
    engine = await new_engine(any_store)
    readings = drive()
    await deliver(any_store, engine, [readings[i:i + 50] for i in range(0, len(readings), 50)])
    assert await alert_spans(any_store) == EXPECTED
    assert engine.stats["alerts_opened"]["overspeed"] == 2


async def test_shuffled_batches_and_live_first_equal_in_order(any_store):
    engine = await new_engine(any_store)
    readings = drive()
    rng = random.Random(12)
    rng.shuffle(readings)
    cuts = sorted(rng.sample(range(1, len(readings)), 30))
    batches = [readings[a:b] for a, b in zip([0, *cuts], [*cuts, len(readings)], strict=True)]
    # live first: the newest reading alone, then the backlog oldest first
    newest = max(readings, key=lambda r: r.time_ms)
    await deliver(any_store, engine, [[newest]])
    await deliver(any_store, engine, batches)
    assert await alert_spans(any_store) == EXPECTED
    stored = await any_store.list_alerts(AlertQuery(state="retracted", limit=1000))
    # retracted alerts are only those a backfill disproved, never listed by default
    assert all(a.state == "retracted" for a in stored)


async def test_redelivery_and_restart_mid_episode_open_no_second_alert(any_store):
    published = []
    engine = await new_engine(any_store, published)
    readings = sorted(drive(), key=lambda r: r.time_ms)
    mid = [r for r in readings if r.time_ms < 130_000]  # inside the first overspeed episode
    await deliver(any_store, engine, [mid[:200], mid[200:]])
    await deliver(any_store, engine, [mid[150:250]])  # re-sent after a lost ack
    opened = [a for a in published if a["rule"] == "overspeed"]
    assert {(a["start_ms"], a["end_ms"], a["state"]) for a in opened} == {(100_000, None, "open")}
    # a backend restart: a new engine over the same store, then the rest of the drive
    engine2 = await new_engine(any_store, published)
    await deliver(any_store, engine2, [[r for r in readings if r.time_ms >= 130_000]])
    assert await alert_spans(any_store) == EXPECTED
    assert engine2.stats["alerts_opened"]["overspeed"] == 1  # only the second episode is new
    ids = {a["id"] for a in published if a["rule"] == "overspeed" and a["start_ms"] == 100_000}
    assert len(ids) == 1
    closed = [a for a in published if a["rule"] == "overspeed" and a["end_ms"] == 160_000]
    assert closed and closed[-1]["state"] == "closed"


async def test_backfill_that_disproves_an_alert_retracts_it(any_store):
    published = []
    engine = await new_engine(any_store, published)
    # 0..19 s, numbered in time order as the agent's journal numbers them: above the limit at
    # even seconds, below it at odd ones
    seconds = [pos(t + 1, t, 100 if t % 2 == 0 else 40) for t in range(20)]
    first = seconds[::4]  # 0, 4, 8, 12, 16 s arrive first: all fast, an episode
    await deliver(any_store, engine, [first])
    assert [a["state"] for a in published] == ["open"]
    # the backfill of the rest: the slow odd seconds break every 4 s gap into 1 s pieces
    await deliver(any_store, engine, [[r for r in seconds if r not in first]])
    assert await alert_spans(any_store) == set()
    assert published[-1]["state"] == "retracted"


async def test_stale_and_offline_on_the_clock_survive_a_restart(any_store):
    await any_store.add_vehicle(V)
    rules = parse_rules({"stale": {"after_s": 300}, "offline": {"after_s": 600}})
    published = []
    t0 = NOW
    engine = AlertEngine(any_store, rules, published.append)
    await engine.start(t0)
    moving = [pos(1, t0 / 1000, 50)]
    await deliver(any_store, engine, [moving], t0)
    await engine.on_timer(t0, {V})
    await engine.on_timer(t0 + 299_000, set())
    assert published == []
    await engine.on_timer(t0 + 301_000, set())
    assert [(a["rule"], a["start_ms"], a["state"]) for a in published] == [
        ("stale", t0 + 300_000, "open")]
    engine2 = AlertEngine(any_store, rules, published.append)  # restart mid-episode
    await engine2.start(t0 + 400_000)
    await engine2.on_timer(t0 + 400_000, set())
    await engine2.on_timer(t0 + 1_000_001, set())
    assert [(a["rule"], a["state"]) for a in published] == [("stale", "open"),
                                                            ("offline", "open")]
    await deliver(any_store, engine2, [[pos(2, (t0 + 1_100_000) / 1000, 50)]], t0 + 1_100_000)
    await engine2.on_timer(t0 + 1_100_000, {V})
    states = {(a["rule"], a["state"], a["end_ms"]) for a in published[2:]}
    assert states == {("stale", "closed", t0 + 1_100_000), ("offline", "closed", t0 + 1_100_000)}
    alerts = await any_store.list_alerts(AlertQuery(limit=100))
    assert sorted(a.rule for a in alerts) == ["offline", "stale"]


async def test_parked_vehicle_is_not_stale(any_store):
    engine = AlertEngine(any_store, parse_rules({}))
    await engine.start(NOW)
    await deliver(any_store, engine, [[pos(1, NOW / 1000, 0.5)]])
    await engine.on_timer(NOW + 3_600_000, set())
    assert await any_store.list_alerts(AlertQuery(rule="stale")) == []


async def test_list_filters_and_ack(any_store):
    engine = await new_engine(any_store)
    await deliver(any_store, engine, [drive()])
    q = AlertQuery
    assert {a.rule for a in await any_store.list_alerts(q(rule="overspeed"))} == {"overspeed"}
    assert len(await any_store.list_alerts(q(rule="overspeed", to_ms=500_000))) == 1
    assert len(await any_store.list_alerts(q(from_ms=950_000))) == 1  # the DTC, 900-1000 s
    assert await any_store.list_alerts(q(vehicles=frozenset({"other"}))) == []
    assert len(await any_store.list_alerts(q(limit=2))) == 2
    a = (await any_store.list_alerts(q(rule="dtc")))[0]
    acked = await any_store.ack_alert(a.id, "dana", NOW)
    assert (acked.acknowledged_by, acked.acknowledged_ms) == ("dana", NOW)
    again = await any_store.ack_alert(a.id, "eve", NOW + 1)
    assert (again.acknowledged_by, again.acknowledged_ms) == ("dana", NOW)
    assert [x.id for x in await any_store.list_alerts(q(acknowledged=True))] == [a.id]
    assert a.id not in {x.id for x in await any_store.list_alerts(q(acknowledged=False))}
    assert await any_store.ack_alert(10**12, "dana", NOW) is None


async def test_backfill_disproving_an_event_decided_after_the_checkpoint(any_store):
    """A geofence entry starts before the checkpoint it is re-evaluated from, and was decided
    after it: the backfill must still move it (the window goes by decision time)."""
    await any_store.put_geofence("depot", "Depot", DEPOT)
    rules = parse_rules({"geofence": {"dwell_s": 5}, "overspeed": {"enabled": False}})
    engine = AlertEngine(any_store, rules, checkpoint_every_ms=1000)
    await engine.start(NOW)
    # the agent numbered the reading at 3.5 s between those at 3 and 4 s, and sent it late
    times = [0, 1, 2, 3, 3.5, *range(4, 12)]
    track = [pos(seq, t, 10, 53.58 if t in (0, 3.5) else 53.55)
             for seq, t in enumerate(times, start=1)]
    late = track.pop(4)
    await deliver(any_store, engine, [track])
    assert await alert_spans(any_store) == {("geofence-enter", "depot", 1, 1)}
    await deliver(any_store, engine, [[late]])  # was outside at 3.5 s
    assert await alert_spans(any_store) == {("geofence-enter", "depot", 4, 4)}


async def test_backlog_moving_an_episode_start_keeps_the_alert_and_its_ack(any_store):
    published = []
    engine = await new_engine(any_store, published)
    await deliver(any_store, engine, [[pos(100 + i, 100 + i, 120) for i in range(21)]])  # live
    [live] = await any_store.list_alerts(AlertQuery())
    assert (live.start_ms, live.end_ms) == (100_000, None)
    await any_store.ack_alert(live.id, "dana", NOW)
    await deliver(any_store, engine, [[pos(1 + i, i, 120) for i in range(99)]])  # the backlog
    [moved] = await any_store.list_alerts(AlertQuery())
    assert (moved.id, moved.start_ms, moved.end_ms, moved.acknowledged_by) == (
        live.id, 0, None, "dana")
    assert engine.stats["alerts_opened"] == {"overspeed": 1}
    assert published[-1]["id"] == live.id and published[-1]["start_ms"] == 0
    assert await any_store.list_alerts(AlertQuery(state="retracted")) == []


async def test_old_checkpoints_are_pruned_but_each_vehicles_newest_stays(any_store):
    from backend.alerts.engine import CHECKPOINT_RETAIN_MS

    engine = AlertEngine(any_store, RULES, checkpoint_every_ms=60_000)
    await engine.start(NOW)
    old = [pos(i + 1, i * 60, 50) for i in range(10)]  # checkpoints at 0, 60, …, 540 s
    other = [pos(1, 30, 50, vehicle="truck-2")]
    await deliver(any_store, engine, [old, other])
    await engine.on_timer(CHECKPOINT_RETAIN_MS + 300_000, set())
    assert engine.stats["checkpoints_pruned"] == 5  # truck-1's 0..240 s
    assert (await any_store.alert_checkpoint(V, 300_000)) is None
    assert (await any_store.alert_checkpoint(V, None))[0] == 540_000
    assert (await any_store.alert_checkpoint("truck-2", None))[0] == 30_000  # its only one
