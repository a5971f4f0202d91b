"""The live path costs no store call unless an alert changes; checkpoints wait for one
transaction across vehicles; a kill -9 that loses them loses no alert. SQLite and PostgreSQL."""

import asyncio
import dataclasses
import json

from backend.alerts import AlertEngine
from backend.alerts.engine import FLUSH_EVERY_MS
from backend.alerts.evaluate import Evaluator, reading_order
from backend.store.base import AlertQuery
from tests.integration.alerts.helpers import pos
from tests.integration.alerts.test_engine import EXPECTED, NOW, RULES, alert_spans, drive

CHECKPOINT_MS = 10_000  # many checkpoints in the 20-minute drive


class Counting:
    """The real store, counting the alert engine's calls by name (instrumentation only)."""

    def __init__(self, store):
        self.store, self.calls = store, {}

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if not callable(attr) or name in ("as_read_back", "real_read_back"):
            return attr

        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return counted


async def engine_on(store, every_ms=CHECKPOINT_MS):
    await store.put_geofence("depot", "Depot", {
        "type": "Polygon", "coordinates": [[[9.98, 53.54], [10.0, 53.54], [10.0, 53.56],
                                            [9.98, 53.56], [9.98, 53.54]]]})
    engine = AlertEngine(store, RULES, checkpoint_every_ms=every_ms)
    await engine.start(NOW)
    return engine


def by_time(readings):
    return sorted(readings, key=lambda r: (r.time_ms, r.seq))


async def test_live_batches_read_nothing_and_write_only_alert_changes(any_store):
    counting = Counting(any_store)
    engine = await engine_on(counting)
    readings = by_time(drive())
    batches = [readings[i:i + 10] for i in range(0, len(readings), 10)]
    changed = 0
    for i, batch in enumerate(batches):
        await any_store.write(batch, [])
        before = dict(counting.calls)
        await engine.on_committed(batch, NOW + i * 100)  # 10 batches a second of wall time
        calls = {k: v - before.get(k, 0) for k, v in counting.calls.items()
                 if v != before.get(k, 0)}
        if i == 0:
            continue  # the vehicle's first evaluation starts from the store
        assert not calls.keys() & {"alert_readings", "alerts_in_window", "alert_checkpoint",
                                   "alert_readings_after", "alerts_in_windows",
                                   "alert_checkpoints_before", "save_alerts_many"}
        changed += calls.get("save_alerts", 0)
    await engine.flush()
    assert await alert_spans(any_store) == EXPECTED
    # opens and closes only: 2 overspeed, coolant, enter, exit, journal event, dtc open+close
    assert 7 <= changed <= 2 * len(EXPECTED)
    # 120 checkpoints over the drive, written in flushes of up to 1 s of wall time (10 batches)
    assert counting.calls["save_alert_checkpoints"] <= len(batches) // 10 + 1
    assert engine.stats["replays"] == 1


async def test_flush_is_one_transaction_for_all_vehicles(any_store):
    counting = Counting(any_store)
    engine = await engine_on(counting, every_ms=1_000)
    vehicles = [f"truck-{i}" for i in range(5)]
    for step in range(4):
        rows = [pos(step + 1, step * 2, 50, vehicle=v) for v in vehicles]
        await any_store.write(rows, [])
        await engine.on_committed(rows, NOW)  # the same instant: no flush is due yet
    assert counting.calls.get("save_alert_checkpoints", 0) == 0
    await engine.on_committed([], NOW + FLUSH_EVERY_MS)
    assert counting.calls["save_alert_checkpoints"] == 1
    for v in vehicles:  # the first evaluation's checkpoint (t=0) and the deferred ones
        assert (await any_store.alert_checkpoint(v, None))[0] == 6_000


async def test_kill9_before_the_flush_loses_no_alert_and_opens_none_twice(any_store):
    readings = by_time(drive())
    engine = await engine_on(any_store)
    mid = [r for r in readings if r.time_ms < 150_000]  # inside the first overspeed episode
    for i in range(0, len(mid), 10):
        await any_store.write(mid[i:i + 10], [])
        await engine.on_committed(mid[i:i + 10], NOW)  # one instant: nothing is flushed
    [open_] = [a for a in await any_store.list_alerts(AlertQuery(rule="overspeed"))]
    assert open_.end_ms is None and open_.start_ms == 100_000
    # the checkpoints written are only those of transactions with an alert change
    newest = (await any_store.alert_checkpoint("truck-1", None))[0]
    assert newest < mid[-1].time_ms - CHECKPOINT_MS
    # kill -9: the engine and its deferred checkpoints are gone; a new one catches up
    engine2 = await engine_on(any_store)
    rest = [r for r in readings if r.time_ms >= 150_000]
    for i in range(0, len(rest), 10):
        await any_store.write(rest[i:i + 10], [])
        await engine2.on_committed(rest[i:i + 10], NOW)
    assert await alert_spans(any_store) == EXPECTED
    overspeed = await any_store.list_alerts(AlertQuery(rule="overspeed"))
    assert sorted((a.start_ms, a.end_ms) for a in overspeed) == [(100_000, 160_000),
                                                                   (700_000, 800_000)]
    assert [a.id for a in overspeed if a.start_ms == 100_000] == [open_.id]
    assert engine2.stats["alerts_opened"]["overspeed"] == 1  # the second episode only


async def test_backfill_after_deferred_checkpoints_equals_in_order(any_store):
    readings = by_time(drive())
    engine = await engine_on(any_store)
    newest = readings[-1]
    late = [r for r in readings if 690_000 <= r.time_ms < 760_000]  # held back by the agent
    first = [r for r in readings if r.time_ms < 690_000 or 760_000 <= r.time_ms]
    for i in range(0, len(first), 10):
        await any_store.write(first[i:i + 10], [])
        await engine.on_committed(first[i:i + 10], NOW)
    assert newest in first
    for i in range(0, len(late), 25):  # the backlog: each batch a replay
        await any_store.write(late[i:i + 25], [])
        await engine.on_committed(late[i:i + 25], NOW)
    await engine.flush()
    assert await alert_spans(any_store) == EXPECTED
    # every stored checkpoint is the in-order fold up to its time (a deferred checkpoint of
    # the gap, computed before the backlog came, must not have been written back)
    stored, before = [], None
    while (cp := await any_store.alert_checkpoint("truck-1", before)) is not None:
        stored.append(cp)
        before = cp[0]
    assert len(stored) > 50
    for t, state in stored:
        ev = Evaluator("truck-1", RULES, engine.fences)
        for r in sorted((r for r in readings if r.time_ms <= t), key=reading_order):
            ev.feed(r)
        assert state == json.loads(json.dumps(ev.state())), t


class CommitDuringReplay(Counting):
    """The real store; while the engine's first replay reads readings, another batch
    commits and reaches the engine (what the gateway does under load)."""

    def __init__(self, store, late):
        super().__init__(store)
        self.late, self.engine, self.task = late, None, None

    async def alert_readings_after(self, asks, held=None):
        if self.task is None:
            await self.store.write(self.late, [])
            self.task = asyncio.get_running_loop().create_task(
                self.engine.on_committed(self.late, NOW))
            await asyncio.sleep(0)  # it books the rows, then waits for the vehicle's lock
        return await self.store.alert_readings_after(asks, held)


async def test_rows_a_replay_read_are_not_replayed_again(any_store):
    first, late, live = [pos(1, 1, 50)], [pos(2, 2, 50)], [pos(3, 3, 50)]
    store = CommitDuringReplay(any_store, late)
    engine = store.engine = await engine_on(store)
    await any_store.write(first, [])
    await engine.on_committed(first, NOW)
    await store.task
    await any_store.write(live, [])
    await engine.on_committed(live, NOW)
    assert engine.stats["replays"] == 1  # the late batch was in the replay's read
    assert engine.stats["readings_evaluated"] == 3  # each reading once


class CommitBeforeReplayRead(Counting):
    """The real store; another batch commits just before the first replay reads, and reaches
    the engine only after that replay finished (its task was between ack and alerts)."""

    def __init__(self, store, late):
        super().__init__(store)
        self.late, self.written = late, False

    async def alert_readings_after(self, asks, held=None):
        if not self.written:
            self.written = True
            await self.store.write(self.late, [])
        return await self.store.alert_readings_after(asks, held)


async def test_rows_a_replay_read_that_arrive_after_it_are_not_evaluated_again(any_store):
    first, late, live = [pos(1, 1, 50)], [pos(2, 2, 50)], [pos(3, 3, 50)]
    store = CommitBeforeReplayRead(any_store, late)
    engine = await engine_on(store)
    await any_store.write(first, [])
    await engine.on_committed(first, NOW)
    await engine.on_committed(late, NOW)  # already read by the replay: nothing to do
    await any_store.write(live, [])
    await engine.on_committed(live, NOW)
    assert engine.stats["replays"] == 1
    assert engine.stats["readings_evaluated"] == 3


async def test_a_ticks_first_evaluations_load_their_state_together(any_store):
    """Twelve vehicles evaluated for the first time in one tick (a fleet connecting): one
    store read per kind and one save for all of them, not four calls per vehicle one after
    another; each gets its own alerts and checkpoints, and the next tick is live."""
    counting = Counting(any_store)
    engine = await engine_on(counting)
    vehicles = [f"truck-{i:02d}" for i in range(12)]
    first = [r for r in by_time(drive()) if r.time_ms < 200_000]  # overspeed 100-160 s
    rows = [dataclasses.replace(r, vehicle_id=v) for v in vehicles for r in first]
    await any_store.write(rows, [])
    before = dict(counting.calls)
    await engine.on_committed(rows, NOW)
    calls = {k: v - before.get(k, 0) for k, v in counting.calls.items()
             if v != before.get(k, 0)}
    assert calls == {"alert_checkpoints_before": 1, "alert_readings_after": 1,
                     "alerts_in_windows": 1, "save_alerts_many": 1}
    assert engine.stats["replays"] == 12 and engine.stats["failures"] == 0
    alerts = await any_store.list_alerts(AlertQuery(limit=100))
    assert sorted((a.vehicle_id, a.rule, a.start_ms, a.end_ms) for a in alerts) == [
        (v, "overspeed", 100_000, 160_000) for v in vehicles]
    for v in vehicles:
        assert (await any_store.alert_checkpoint(v, None)) is not None
    more = [pos(1000 + i, 200 + i, 50, vehicle=v) for i, v in enumerate(vehicles)]
    await any_store.write(more, [])
    before = dict(counting.calls)
    await engine.on_committed(more, NOW)
    assert counting.calls == before  # live: no store call
