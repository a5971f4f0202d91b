"""The gateway's per-tick ack queue (backend/gateway_ingest.py `AckQueue`): oldest first, each
connection once, a bounded piece per callback; a commit's batches through the `Ingest`."""

import asyncio
from types import SimpleNamespace

from backend.alerts.engine import NoAlerts
from backend.gateway_ingest import ACKS_PER_CALLBACK, AckQueue, Ingest
from backend.gateway_stats import GatewayStats
from backend.hub import Hub
from backend.metrics import LoopHistogram
from backend.store.base import StoredReading
from geostream.messages import Batch


def test_pieces_are_bounded_and_oldest_first():
    q = AckQueue()
    conns = [f"conn-{i}" for i in range(2 * ACKS_PER_CALLBACK + 5)]
    for c in conns:
        q.add(c)
    first = q.take(ACKS_PER_CALLBACK)
    assert first == conns[:ACKS_PER_CALLBACK]
    assert len(q) == ACKS_PER_CALLBACK + 5
    second = q.take(ACKS_PER_CALLBACK)
    assert second == conns[ACKS_PER_CALLBACK:2 * ACKS_PER_CALLBACK]
    assert q.take(ACKS_PER_CALLBACK) == conns[2 * ACKS_PER_CALLBACK:]
    assert len(q) == 0 and q.take(ACKS_PER_CALLBACK) == []


def test_a_connection_is_queued_once_in_its_first_place():
    q = AckQueue()
    for c in ["a", "b", "a", "c", "b"]:  # several batches of a and b committed
        q.add(c)
    assert len(q) == 3
    assert q.take(2) == ["a", "b"]
    q.add("a")  # acked again after its flush: behind those still waiting
    assert q.take(5) == ["c", "a"]


def test_the_order_is_arrival_not_hash():
    """A set would send the same vehicles last tick after tick; the queue keeps arrival."""
    q = AckQueue()
    names = [f"v{i:05d}" for i in range(1000)][::-1]
    for n in names:
        q.add(n)
    out = []
    while len(q):
        out += q.take(64)
    assert out == names


# --- a commit's batches through the Ingest: acked, counted, forgotten ---------------------------

class _Writer:
    """Holds what the Ingest adds; `commit` settles it all as the writer does."""

    full = False

    def __init__(self):
        self.subs = []
        self.on_space = None

    def add(self, sub):
        self.subs.append(sub)

    def commit(self):
        subs, self.subs = self.subs, []
        for sub in subs:
            sub.settle(None)


class _Conn:
    """A connection as the Ingest sees it: acks queued, then flushed."""

    def __init__(self, closing=False):
        self.closing = closing
        self.queued: list[tuple] = []
        self.flushes = 0

    def committed(self, batch, credit):
        if self.closing:
            return False
        self.queued.append((batch, credit))
        return True

    def flush_acks(self):
        self.flushes += 1


def _gateway():
    async def nothing(rows, now):
        return None

    return SimpleNamespace(
        writer=_Writer(), ack_wait_s=60.0, credit=lambda: 17, stats=GatewayStats(),
        ack_latency=LoopHistogram("t", "t", (0.1, 1.0)), hub=Hub(), alerts=NoAlerts(),
        dispatch=SimpleNamespace(on_committed=nothing))


def _batch(*seqs):
    return Batch(epoch=1, readings=tuple({"q": q, "ts": 1, "k": "evt"} for q in seqs))


def _rows(n):
    return [StoredReading(vehicle_id="v", epoch=1, seq=q, time_ms=1, kind="evt", data={},
                          received_ms=1) for q in range(1, n + 1)]


async def test_a_ticks_commits_are_acked_counted_and_forgotten():
    """Each committed batch's ack is queued with the commit's credit and its connection
    flushed once; the tick's batches and readings are counted and their latencies observed;
    the settled batches are not kept until the ack timer (armed for 60 s) fires."""
    gw = _gateway()
    ingest = Ingest(gw)
    a, b, gone = _Conn(), _Conn(), _Conn(closing=True)
    ingest.batch(a, _batch(1), _rows(1), [])
    ingest.batch(b, _batch(1, 2), _rows(2), [])
    ingest.batch(a, _batch(2), _rows(1), [])
    ingest.batch(gone, _batch(1), _rows(1), [])
    gw.writer.commit()
    await asyncio.sleep(0)  # the tick's end (call_soon), no timing involved
    assert [credit for _, credit in a.queued + b.queued] == [17, 17, 17]
    assert [batch.readings[0]["q"] for batch, _ in a.queued] == [1, 2]
    assert (a.flushes, b.flushes, gone.flushes) == (1, 1, 0)
    assert (gw.stats.batches, gw.stats.readings) == (4, 5)  # the closing one's rows committed
    assert sum(gw.ack_latency._counts) == 3  # the acks that leave
    assert not ingest._waiting and ingest._timer is not None
    ingest._timer.cancel()
