"""The gateway's per-tick ack queue (backend/gateway_ingest.py `AckQueue`): oldest first, each
connection once, a bounded piece per callback."""

from backend.gateway_ingest import ACKS_PER_CALLBACK, AckQueue


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
