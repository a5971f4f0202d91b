"""BatchWriter against a scripted in-memory store: batching, retry, isolation, backpressure."""

import asyncio

import pytest

from backend.store.base import DeadLetter, StoredReading
from backend.writer import BatchWriter, WriterStopped
from tests import emuclock


def reading(seq, vehicle="v1"):
    return StoredReading(vehicle_id=vehicle, epoch=1, seq=seq, time_ms=1000 * seq, kind="pos",
                         lat=1.0, lon=2.0, received_ms=0)


class FakeStore:
    """Stores rows by key; refuses any batch holding a `poison` seq; fails while `down`."""

    def __init__(self):
        self.rows: dict[tuple, StoredReading] = {}
        self.dead: dict[tuple, DeadLetter] = {}
        self.transactions: list[int] = []
        self.poison: set[int] = set()
        self.down = 0            # fail this many next writes with ConnectionError
        self.gate: asyncio.Event | None = None

    def is_transient(self, exc):
        return isinstance(exc, ConnectionError)

    async def write(self, readings, dead):
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.down:
            self.down -= 1
            raise ConnectionError("server closed the connection")
        if any(r.seq in self.poison for r in readings):
            raise ValueError("value out of range")
        for r in readings:
            self.rows.setdefault((r.vehicle_id, r.epoch, r.seq), r)
        for d in dead:
            self.dead.setdefault((d.vehicle_id, d.epoch, d.seq), d)
        self.transactions.append(len(readings))


@pytest.fixture
def store():
    return FakeStore()


async def test_submissions_resolve_after_commit_and_share_transactions(store):
    w = BatchWriter(store, max_rows=1000)
    w.start()
    store.gate = asyncio.Event()
    tasks = [asyncio.create_task(w.submit([reading(i)], [])) for i in range(1, 51)]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in tasks) and store.rows == {}
    store.gate.set()
    await asyncio.gather(*tasks)
    assert len(store.rows) == 50
    assert len(store.transactions) <= 2  # the first alone, the other 49 grouped
    assert w.backlog_rows == 0
    await w.stop()


async def test_max_rows_splits_transactions(store):
    w = BatchWriter(store, max_rows=10)
    w.start()
    store.gate = asyncio.Event()
    tasks = [asyncio.create_task(w.submit([reading(i * 4 + j) for j in range(4)], []))
             for i in range(10)]
    await asyncio.sleep(0.01)
    store.gate.set()
    await asyncio.gather(*tasks)
    assert max(store.transactions) <= 10 and sum(store.transactions) == 40
    await w.stop()


async def test_linger_groups_small_submissions_until_time_or_size(store):
    w = BatchWriter(store, max_rows=10, linger_s=0.3)
    w.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(w.submit([reading(1)], []), w.submit([reading(2)], []))
    assert loop.time() - t0 >= 0.25 and store.transactions == [2]
    t0 = loop.time()
    await w.submit([reading(i) for i in range(10, 20)], [])  # full: no lingering
    assert loop.time() - t0 < 0.2
    await w.stop()


async def test_transient_failures_retry_until_stored(store, monkeypatch):
    monkeypatch.setattr("backend.writer.RETRY_MIN_S", 0.01)
    store.down = 3
    w = BatchWriter(store)
    w.start()
    await w.submit([reading(1), reading(2)], [])
    assert len(store.rows) == 2 and w.stats.failures == 3 and w.stats.connected
    await w.stop()


async def test_bad_rows_go_to_dead_letter_and_the_rest_commit(store):
    store.poison = {7, 30}
    w = BatchWriter(store)
    w.start()
    dead_in = DeadLetter("v1", 1, 99, {"q": 99}, "invalid", 0)
    await asyncio.gather(w.submit([reading(i) for i in range(1, 21)], [dead_in]),
                         w.submit([reading(i) for i in range(21, 41)], []))
    assert sorted(k[2] for k in store.rows) == [i for i in range(1, 41) if i not in (7, 30)]
    assert sorted(k[2] for k in store.dead) == [7, 30, 99]
    assert "value out of range" in store.dead[("v1", 1, 7)].error
    assert store.dead[("v1", 1, 7)].reading["seq"] == 7
    assert w.stats.isolated_rows == 2
    await w.stop()


async def test_full_backlog_blocks_submit_and_reports_pressure_and_lag(store):
    store.gate = asyncio.Event()
    w = BatchWriter(store, max_rows=100, max_backlog_rows=10)
    w.start()
    first = asyncio.create_task(w.submit([reading(i) for i in range(10)], []))
    await asyncio.sleep(0.05)
    assert w.pressure == 1.0 and w.lag_s >= 0.04
    blocked = asyncio.create_task(w.submit([reading(50)], []))
    await asyncio.sleep(0.05)
    assert not blocked.done() and w.backlog_rows == 10  # not even queued
    store.gate.set()
    await asyncio.gather(first, blocked)
    assert len(store.rows) == 11 and w.pressure == 0 and w.lag_s == 0
    await w.stop()


async def test_stop_flushes_everything_submitted_then_refuses(store):
    store.gate = asyncio.Event()
    w = BatchWriter(store, max_rows=5)
    w.start()
    tasks = [asyncio.create_task(w.submit([reading(i)], [])) for i in range(1, 21)]
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(w.stop())
    await asyncio.sleep(0.01)
    with pytest.raises(WriterStopped):
        await w.submit([reading(99)], [])
    store.gate.set()
    await stopping
    await asyncio.gather(*tasks)
    assert len(store.rows) == 20


async def test_stop_timeout_abandons_unacknowledged(store):
    store.gate = asyncio.Event()  # never opens: database gone for good
    w = BatchWriter(store)
    w.start()
    task = asyncio.create_task(w.submit([reading(1)], []))
    await asyncio.sleep(0.01)
    await w.stop(timeout=0.1)
    with pytest.raises(WriterStopped):
        await task
    assert store.rows == {}


async def _paced(store: FakeStore) -> dict:
    """One-reading submissions in ticks of their own, as 1 Hz vehicles send them."""
    loop = asyncio.get_running_loop()
    w = BatchWriter(store, interval_s=0.020)
    w.start()
    t0 = loop.time()
    await w.submit([reading(1)], [])  # the first after a pause: at once
    first = loop.time() - t0
    tasks = []
    for i in range(2, 7):  # one every 2 ms: all within the interval
        tasks.append(asyncio.create_task(w.submit([reading(i)], [])))
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    second = loop.time() - t0
    await asyncio.sleep(1)  # a pause: the next commits at once again
    t1 = loop.time()
    await w.submit([reading(7)], [])
    after_pause = loop.time() - t1
    await w.stop()
    return {"first": first, "second": second, "after_pause": after_pause}


def test_pacing_groups_the_submissions_of_one_interval(store):
    times, _ = emuclock.run(_paced(store))
    assert store.transactions == [1, 5, 1]  # unpaced: [1, 1, 1, 1, 1, 1, 1]
    assert times["first"] == 0 and times["after_pause"] == 0
    assert times["second"] == pytest.approx(0.020)


async def _paused_then(store: FakeStore, full: bool) -> float:
    loop = asyncio.get_running_loop()
    w = BatchWriter(store, max_rows=3, interval_s=3600)
    w.start()
    await w.submit([reading(1)], [])
    t0 = loop.time()
    tasks = []
    for i in range(2, 5 if full else 3):  # in ticks of their own: the writer is pausing
        tasks.append(asyncio.create_task(w.submit([reading(i)], [])))
        await asyncio.sleep(0.001)
    if not full:
        await w.stop()
    await asyncio.gather(*tasks)
    await w.stop()
    return loop.time() - t0


@pytest.mark.parametrize("full", [True, False], ids=["full-transaction", "stop"])
def test_a_full_transaction_or_a_stop_ends_the_pause(store, full):
    waited, _ = emuclock.run(_paused_then(store, full))
    assert waited < 1 and sum(store.transactions) == (4 if full else 2)


async def test_a_large_commit_is_settled_in_steps_the_loop_runs_between(store):
    """The owners of one commit hear `SETTLES_PER_STEP` at a time: a callback the first owner
    schedules runs before the last owner hears (a commit of thousands is not one step)."""
    from backend.writer import SETTLES_PER_STEP

    n = 2 * SETTLES_PER_STEP + 1
    w = BatchWriter(store, max_rows=n, interval_s=0)
    w.start()
    store.gate = asyncio.Event()
    heard: list[int] = []
    between: list[int] = []
    loop = asyncio.get_running_loop()

    def owner(i):
        def settled(error):
            assert error is None
            if i == 0:
                loop.call_soon(lambda: between.append(len(heard)))
            heard.append(i)
        return settled

    for i in range(n):
        w.enqueue([reading(i + 1)], [], owner(i))
    store.gate.set()
    for _ in range(100):
        if len(heard) == n:
            break
        await asyncio.sleep(0)
    await w.stop()
    assert heard == list(range(n)) and store.transactions == [n]
    assert between and between[0] < n  # the loop ran before the commit's last owner heard


def test_the_configured_pacing_default_is_the_writers():
    """backend/config.py's `writer_interval_ms` default and the writer's own DEFAULT_INTERVAL_S
    are one figure written twice (the configuration module stays free of the writer's
    imports): a change to one must be made to the other (session 16 moved both 20 -> 50 ms)."""
    from backend.config import BackendConfig
    from backend.writer import DEFAULT_INTERVAL_S

    assert BackendConfig().writer_interval_ms == round(DEFAULT_INTERVAL_S * 1000)
