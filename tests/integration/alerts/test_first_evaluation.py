"""A first evaluation (no cached state: a vehicle connecting, a restart, a backfill) reads back
from the store only the readings the engine does not hold, and raises the alerts of the
hand-derived reference (`EXPECTED`), each once: a fleet's backlog, a backfill that arrives
late, a checkpoint missing. SQLite and PostgreSQL."""

import dataclasses

from backend.alerts import AlertEngine
from backend.store.base import AlertQuery
from tests.integration.alerts.test_engine import DEPOT, EXPECTED, NOW, RULES, alert_spans, drive


class ReadRows:
    """The real store, counting the rows its replay reads return (instrumentation only);
    `no_checkpoints`: as if the vehicle's checkpoints were lost."""

    def __init__(self, store, no_checkpoints=False):
        self.store, self.rows, self.no_checkpoints = store, 0, no_checkpoints

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def alert_readings_after(self, asks, held=None):
        got = await self.store.alert_readings_after(asks, held)
        self.rows += sum(map(len, got.values()))
        return got

    async def alert_checkpoints_before(self, asks):
        return {} if self.no_checkpoints else await self.store.alert_checkpoints_before(asks)


async def engine_on(store, **options):
    await store.put_geofence("depot", "Depot", DEPOT)
    engine = AlertEngine(store, RULES, **options)
    await engine.start(NOW)
    return engine


async def opened_once(store, engine):
    """The reference's alerts, none retracted, each opened once by `engine`."""
    assert engine.stats["failures"] == 0
    assert await alert_spans(store) == EXPECTED
    assert not await store.list_alerts(AlertQuery(state="retracted", limit=100))
    assert sum(engine.stats["alerts_opened"].values()) == len(EXPECTED)


async def test_a_fleets_backlog_is_not_read_back(any_store):
    """Three vehicles' whole drives committed in one transaction and handed over at once (a
    storm's reconnects): their first evaluations read no reading back."""
    store = ReadRows(any_store)
    engine = await engine_on(store)
    vehicles = ("truck-a", "truck-b", "truck-c")
    rows = [dataclasses.replace(r, vehicle_id=v) for v in vehicles for r in drive()]
    await any_store.write(rows, [])
    await engine.on_committed(rows, NOW)
    assert store.rows == 0
    assert engine.stats["replays"] == 3 and engine.stats["readings_evaluated"] == len(rows)
    alerts = await any_store.list_alerts(AlertQuery(limit=100))
    for v in vehicles:
        assert {(a.rule, a.subject, a.start_ms / 1000,
                 None if a.end_ms is None else a.end_ms / 1000)
                for a in alerts if a.vehicle_id == v} == EXPECTED
    assert sum(engine.stats["alerts_opened"].values()) == 3 * len(EXPECTED)


async def test_rows_committed_after_the_handed_ones_are_read_and_evaluated_once(any_store):
    """The vehicle's first batch reaches the engine after its next two batches committed
    (the consumer was behind): the replay reads those two from the store, not the first;
    when they reach the engine they are not evaluated again."""
    store = ReadRows(any_store)
    engine = await engine_on(store)
    readings = drive()
    third = len(readings) // 3
    batches = [readings[:third], readings[third:2 * third], readings[2 * third:]]
    for batch in batches:
        await any_store.write(batch, [])
    for batch in batches:
        await engine.on_committed(batch, NOW)
    assert store.rows == len(readings) - third
    assert engine.stats["readings_evaluated"] == len(readings)
    await opened_once(any_store, engine)


async def test_a_restarted_engine_reads_from_the_checkpoint_less_what_it_holds(any_store):
    """A new process (restart): the vehicle's next batch replays from the newest checkpoint
    before it, reading back the rows between the checkpoint and the batch only."""
    readings = drive()
    half = [r for r in readings if r.time_ms < 650_000]  # the second overspeed is ahead
    first = await engine_on(any_store)
    for i in range(0, len(half), 50):
        await any_store.write(half[i:i + 50], [])
        await first.on_committed(half[i:i + 50], NOW)
    await first.flush()
    store = ReadRows(any_store)
    engine = await engine_on(store)  # its catch-up finds nothing after the newest checkpoint
    rest = readings[len(half):]
    cp_ms, _ = await any_store.alert_checkpoint("truck-1", rest[0].time_ms)
    before = store.rows
    await any_store.write(rest, [])
    await engine.on_committed(rest, NOW)
    assert store.rows - before == sum(1 for r in half if r.time_ms > cp_ms)
    assert await alert_spans(any_store) == EXPECTED
    assert engine.stats["alerts_opened"]["overspeed"] == 1  # the second episode only


async def test_a_late_backfill_gives_the_reference_alerts_once(any_store):
    """The agent holds back the second overspeed and the DTC's clearing (690–1010 s) and sends
    them after the rest: the backfill replays from the checkpoint before it, reads the rows
    after it it does not hold (the newer ones), and ends at the reference. (The newer rows
    do not wait for it: they were evaluated once their HOLD_MS had passed.)"""
    store = ReadRows(any_store)
    engine = await engine_on(store, hold_gap=None)
    readings = drive()
    late = [r for r in readings if 690_000 <= r.time_ms < 1_010_000]
    early = [r for r in readings if r.time_ms < 690_000 or r.time_ms >= 1_010_000]
    for i in range(0, len(early), 50):
        await any_store.write(early[i:i + 50], [])
        await engine.on_committed(early[i:i + 50], NOW)
    await any_store.write(late, [])
    cp_ms, _ = await any_store.alert_checkpoint("truck-1", late[0].time_ms)
    before = store.rows
    await engine.on_committed(late, NOW)
    assert store.rows - before == sum(1 for r in early if r.time_ms > cp_ms)
    assert engine.stats["failures"] == 0
    assert await alert_spans(any_store) == EXPECTED
    # the DTC was open until the backfill closed it; the second overspeed came with it
    assert engine.stats["alerts_opened"]["overspeed"] == 2
    assert engine.stats["alerts_opened"]["dtc"] == 1


async def test_a_missing_checkpoint_replays_from_the_first_reading(any_store):
    """The vehicle's checkpoints are lost (a new process, none found): its first evaluation
    folds every stored reading from the first, reading back those it does not hold, and
    opens nothing the store already has."""
    readings = drive()
    half = [r for r in readings if r.time_ms < 650_000]
    first = await engine_on(any_store)
    for i in range(0, len(half), 50):
        await any_store.write(half[i:i + 50], [])
        await first.on_committed(half[i:i + 50], NOW)
    store = ReadRows(any_store, no_checkpoints=True)
    engine = await engine_on(store)
    rest = readings[len(half):]
    await any_store.write(rest, [])
    await engine.on_committed(rest, NOW)
    assert store.rows == len(half) == engine.stats["read_back"]
    assert engine.stats["readings_evaluated"] == len(readings)
    assert await alert_spans(any_store) == EXPECTED
    assert not await any_store.list_alerts(AlertQuery(state="retracted", limit=100))
    # the second overspeed and the DTC: the others were stored already, and stay as they are
    assert dict(engine.stats["alerts_opened"]) == {"overspeed": 1, "dtc": 1}
