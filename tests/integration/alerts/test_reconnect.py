"""A vehicle's cached alert state across a reconnect to the same process: kept (its next
batch is evaluated live, no replay), for at most `max_idle_states` disconnected vehicles; in a
cluster it is checked once against the store and dropped when another process evaluated
readings meanwhile. Real SQLite and PostgreSQL."""

from backend.alerts import AlertEngine
from backend.store.base import AlertQuery
from tests.integration.alerts.helpers import pos
from tests.integration.alerts.test_engine import NOW, RULES

VEHICLES = [f"truck-{i}" for i in range(5)]


async def _commit(store, engine, rows):
    await store.write(rows, [])
    await engine.on_committed(rows, NOW)


async def test_disconnected_states_are_kept_within_the_bound(any_store):
    engine = AlertEngine(any_store, RULES, max_idle_states=2)
    await engine.start(NOW)
    for v in VEHICLES:
        engine.reconnected(v)
        await _commit(any_store, engine, [pos(1, 0, 50, vehicle=v)])
    assert engine.stats["replays"] == len(VEHICLES)  # each one's first evaluation
    for v in VEHICLES:
        engine.disconnected(v)
        assert len(engine._idle) <= 2
    assert set(engine._cache) == set(VEHICLES[-2:])  # the two disconnected last
    # the kept ones resume live after a reconnect; a dropped one replays
    for v in VEHICLES:
        engine.reconnected(v)
        await _commit(any_store, engine, [pos(2, 1, 50, vehicle=v)])
    assert engine.stats["replays"] == len(VEHICLES) + 3
    assert not engine._idle


async def test_a_reconnect_keeps_an_overspeed_under_way(any_store):
    engine = AlertEngine(any_store, RULES)
    await engine.start(NOW)
    v = VEHICLES[0]
    engine.reconnected(v)
    await _commit(any_store, engine, [pos(s, s, 120) for s in range(1, 8)])
    engine.disconnected(v)
    engine.reconnected(v)
    await _commit(any_store, engine, [pos(s, s, 120 + s) for s in range(8, 12)])
    assert engine.stats["replays"] == 1
    alerts = await any_store.list_alerts(AlertQuery(limit=10))
    assert [(a.rule, a.start_ms, a.state, a.peak) for a in alerts] == [
        ("overspeed", 1000, "open", 131.0)]


class _Cluster:
    """Stands for backend/cluster/owners.py: the engine only asks whether it is set."""


async def test_in_a_cluster_readings_evaluated_elsewhere_meanwhile_force_a_replay(any_store):
    engine = AlertEngine(any_store, RULES, owners=_Cluster())
    await engine.start(NOW)
    v = VEHICLES[0]
    engine.reconnected(v)
    await _commit(any_store, engine, [pos(1, 1, 50, vehicle=v)])
    engine.disconnected(v)
    # another process held the vehicle meanwhile and stored (and evaluated) its readings
    await any_store.write([pos(s, s, 120, vehicle=v) for s in range(2, 15)], [])
    engine.reconnected(v)
    await _commit(any_store, engine, [pos(15, 15, 120, vehicle=v)])
    assert engine.stats["replays"] == 2
    alerts = await any_store.list_alerts(AlertQuery(limit=10))
    assert [(a.rule, a.start_ms) for a in alerts] == [("overspeed", 2000)]
    # nothing meanwhile: the check passes and the state carries on
    engine.disconnected(v)
    engine.reconnected(v)
    await _commit(any_store, engine, [pos(16, 16, 120, vehicle=v)])
    assert engine.stats["replays"] == 2


async def test_a_drain_after_a_reconnect_evaluates_each_reading_once(any_store):
    """The agent's drain: its newest position first, then the backlog oldest first. The
    position waits for the backlog below it (HOLD_GAP), so nothing replays; alerts as in
    order."""
    from backend.alerts.engine import HOLD_GAP

    engine = AlertEngine(any_store, RULES, hold_gap=HOLD_GAP)
    await engine.start(NOW)
    v = VEHICLES[0]
    engine.reconnected(v)
    await _commit(any_store, engine, [pos(s, s, 50, vehicle=v) for s in range(1, 11)])
    engine.disconnected(v)
    backlog = [pos(s, s, 50 if s < 40 or s > 70 else 120, vehicle=v) for s in range(11, 101)]
    newest = backlog.pop()
    engine.reconnected(v)
    await _commit(any_store, engine, [newest, *backlog[:9]])
    assert engine.stats["held"] == 1
    for i in range(9, len(backlog), 10):
        await _commit(any_store, engine, backlog[i:i + 10])
    assert engine.stats["replays"] == 1  # the first evaluation only
    assert engine.stats["readings_evaluated"] == 100
    alerts = await any_store.list_alerts(AlertQuery(limit=10))
    assert [(a.rule, a.start_ms, a.end_ms) for a in alerts] == [("overspeed", 40_000, 71_000)]


async def test_a_held_reading_is_evaluated_after_hold_ms(any_store):
    """A backlog that never comes (the journal dropped it): the reading waits HOLD_MS."""
    from backend.alerts.engine import HOLD_GAP, HOLD_MS

    engine = AlertEngine(any_store, RULES, hold_gap=HOLD_GAP)
    await engine.start(NOW)
    v = VEHICLES[0]
    await _commit(any_store, engine, [pos(1, 1, 50, vehicle=v)])
    await _commit(any_store, engine, [pos(500, 20, 130, vehicle=v)])  # far ahead: held
    await engine.on_timer(NOW + HOLD_MS - 1, [v])
    assert engine._cache[v].end == 1000
    await engine.on_timer(NOW + HOLD_MS, [v])
    assert engine._cache[v].end == 20_000 and not engine._held


async def test_readings_sent_again_after_a_lost_ack_are_not_evaluated_again(any_store):
    """The ack of a batch is lost; the agent reconnects and sends it again (the store keeps
    one row each): it is not evaluated a second time, and costs no store read."""
    from tests.integration.alerts.test_live_path import Counting

    counting = Counting(any_store)
    engine = AlertEngine(counting, RULES)
    await engine.start(NOW)
    v = VEHICLES[0]
    engine.reconnected(v)
    drive = [pos(s, s, 120 if 8 <= s <= 20 else 50, vehicle=v) for s in range(1, 31)]
    for i in range(0, 20, 5):
        await _commit(any_store, engine, drive[i:i + 5])
    reads = counting.calls["alert_readings_after"]  # the first evaluation's
    engine.disconnected(v)  # the ack of 16..20 was lost
    engine.reconnected(v)
    await _commit(any_store, engine, drive[15:25])  # 16..20 again, then 21..25
    await _commit(any_store, engine, drive[20:30])  # 21..25 again (lost once more), 26..30
    assert counting.calls["alert_readings_after"] == reads
    assert engine.stats["replays"] == 1
    assert engine.stats["readings_evaluated"] == 30  # each reading once
    assert engine.stats["repeats"] == 10
    alerts = await any_store.list_alerts(AlertQuery(limit=10))
    assert [(a.rule, a.start_ms, a.end_ms) for a in alerts] == [("overspeed", 8_000, 21_000)]
