"""Drain order for the uplink: live-first, then the backlog oldest-first within a byte budget."""

from __future__ import annotations

from agent.journal import DrainState, Journal
from agent.readings import Event, Signals
from tests.integration.journal.conftest import T0, pos, sig


def _drain_all(j: Journal, drain: DrainState, n: int, max_bytes: int = 65536) -> list[list[int]]:
    batches = []
    for _ in range(1000):  # bounded: the tests below need far fewer
        batch = j.next_batch(drain, n, max_bytes)
        if not batch:
            return batches
        batches.append(list(batch.seqs))
    raise AssertionError("drain did not finish")


def test_newest_position_goes_first_then_backlog_oldest_first(jpath):
    j = Journal(jpath)
    seqs = j.append([pos(T0 + i) if i % 3 == 0 else sig(T0 + i) for i in range(1000)])
    j.append([sig(T0 + 2000)])  # the newest reading is not a position
    newest_pos = max(q for i, q in enumerate(seqs) if i % 3 == 0)
    drain = DrainState(j.acked_through())
    batches = _drain_all(j, drain, 100)
    assert batches[0][0] == newest_pos
    assert batches[0][1:] == list(range(1, 100))
    flat = [q for b in batches for q in b]
    assert sorted(flat) == list(range(1, 1002)), "every reading exactly once"
    assert flat[1:] == sorted(flat[1:]), "the backlog goes oldest-first"
    j.close()


def test_a_new_position_jumps_the_backlog_mid_drain(jpath):
    j = Journal(jpath)
    j.append([sig(T0 + i) for i in range(500)])
    drain = DrainState(0)
    first = list(j.next_batch(drain, 100, 65536).seqs)
    assert first == list(range(1, 101))  # no position pending: plain oldest-first
    (live,) = j.append([pos(T0 + 600)])
    second = list(j.next_batch(drain, 100, 65536).seqs)
    assert second[0] == live and second[1:] == list(range(101, 200))
    rest = [q for b in _drain_all(j, drain, 100) for q in b]
    assert live not in rest and rest == list(range(200, 501))
    j.close()


def test_small_backlog_keeps_seq_order(jpath):
    j = Journal(jpath)
    j.append([pos(T0 + i) for i in range(10)])
    batch = j.next_batch(DrainState(0), 100, 65536)
    assert list(batch.seqs) == list(range(1, 11))
    j.close()


def test_byte_budget_is_respected_and_a_big_reading_still_goes(jpath):
    j = Journal(jpath)
    j.append([pos(T0 + i) for i in range(300)])
    drain = DrainState(0)
    batch = j.next_batch(drain, 1000, 2000)
    from cbor2 import dumps, loads
    size = sum(len(dumps({k: v for k, v in r.items() if k != "q"})) + 3
               for r in loads(batch.cbor))
    assert 0 < size <= 2000 and len(batch) < 300
    assert j.next_batch(DrainState(0), 1000, 10)  # budget below one reading: still one
    j.close()


def test_acked_and_reconnect_resends_only_unacked(jpath):
    j = Journal(jpath)
    j.append([pos(T0 + i) for i in range(50)])
    drain = DrainState(j.acked_through())
    _drain_all(j, drain, 20)
    j.acknowledge(30, [(45, 47)])
    # a new connection starts from acked_through(): what is left goes again, nothing acked
    again = [q for b in _drain_all(j, DrainState(j.acked_through()), 20) for q in b]
    assert sorted(again) == [q for q in range(31, 51) if not 45 <= q <= 47]
    j.close()


def test_batch_after_is_unchanged_oldest_first(jpath):
    j = Journal(jpath)
    j.append([pos(T0 + i) for i in range(10)])
    assert [r["q"] for r in j.batch_after(3, 4, 65536)] == [4, 5, 6, 7]
    j.close()


def test_recreated_journal_is_detected_by_the_drain_and_acks(tmp_path):
    import pytest

    from agent.journal import EpochChanged

    path = tmp_path / "journal.sqlite"
    j = Journal(str(path))
    j.append([pos(T0 + i) for i in range(5)])
    old = j.epoch
    drain = DrainState(0, epoch=old)
    assert j.next_batch(drain, 10, 65536)
    j.close()
    path.write_bytes(b"garbage" * 1000)
    j2 = Journal(str(path))
    j2.append([pos(T0 + i) for i in range(5)])
    with pytest.raises(EpochChanged):
        j2.next_batch(drain, 10, 65536)
    assert j2.acknowledge(5, [], epoch=old) == 0  # an old-epoch ack deletes nothing new
    assert j2.stats().pending == 5
    assert j2.acknowledge(5, [], epoch=j2.epoch) == 5
    j2.close()


def test_more_says_whether_a_budget_left_readings_behind(jpath):
    j = Journal(jpath)
    j.append([pos(T0 + i) for i in range(250)])
    drain = DrainState(0)
    j.next_batch(drain, 100, 65536)
    assert drain.more  # stopped at the reading budget
    j.next_batch(drain, 100, 65536)
    assert drain.more
    last = j.next_batch(drain, 100, 65536)
    assert len(last) == 50 and not drain.more  # caught up: the uplink paces what follows
    exact = DrainState(0)
    j2_batch = j.next_batch(exact, 250, 65536)
    assert len(j2_batch) == 250 and not exact.more  # exactly the budget, nothing left
    small = DrainState(0)
    j.next_batch(small, 1000, 2000)
    assert small.more  # stopped at the byte budget
    j.close()


def _stored(path) -> dict[int, bytes]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT seq, payload FROM readings"))
    finally:
        db.close()


def test_the_wire_bytes_are_the_old_paths(jpath):
    """The journal hands the session its batches encoded around the stored payloads; on the
    wire that is byte for byte what the agent sent before, when it handed the session the
    reading maps (`wire_rows` of the same rows), in every compression shape a welcome picks,
    across live-first batches, byte budgets, acks and a reconnect."""
    import random

    from agent.journal_drain import wire_rows
    from agent.readings import Action
    from geostream.codec import EncodedReadings, encode
    from geostream.messages import Welcome
    from geostream.session import ClientSession
    from geostream.zdict import DICTIONARIES

    rng = random.Random(29)
    j = Journal(jpath)
    welcomes = [Welcome(credit=500, max_batch_bytes=65536, time=1, zdict=max(DICTIONARIES)),
                Welcome(credit=500, max_batch_bytes=65536, time=1, z=True),
                Welcome(credit=500, max_batch_bytes=65536, time=1)]
    sessions = []
    for welcome in welcomes:
        pair = (ClientSession("truck-1", "t", j.epoch), ClientSession("truck-1", "t", j.epoch))
        for s in pair:
            s.receive(encode(welcome))
            s.data_to_send()
        sessions.append(pair)
    drain, t, sent = DrainState(0, epoch=j.epoch), T0, 0
    for step in range(120):
        t += 100
        j.append([rng.choice([
            pos(t, 53 + rng.random(), 10 + rng.random()),
            Signals(t, "can0", {f"S{i}": rng.choice([rng.random(), rng.randint(-9, 10**9),
                                                     "eco", None])
                                for i in range(rng.randint(0, 30))}),
            Event(t, "journal-dropped", {"reason": "full", "counts": {"pos": 9}}),
            Action(t, {"key": f"k{t}", "kind": "arrived", "job_id": "j1", "device_seq": t})])
            for _ in range(rng.randint(1, 12))])
        batch = j.next_batch(drain, rng.randint(1, 40), rng.randint(60, 4000))
        if not batch:
            continue
        assert isinstance(batch, EncodedReadings)
        stored = _stored(jpath)
        maps = wire_rows([(q, stored[q]) for q in batch.seqs])  # what the agent sent before
        for maps_side, encoded_side in sessions:
            assert encoded_side.batch_size(batch) == maps_side.batch_size(maps)
            encoded_side.send_batch(batch)
            maps_side.send_batch(maps)
            assert encoded_side.data_to_send() == maps_side.data_to_send()
        sent += len(batch)
        if step % 10 == 9:  # an ack, now and then a reconnect that sends the rest again
            j.acknowledge(max(batch.seqs) - rng.randint(0, 5), [])
            if step % 30 == 29:
                drain = DrainState(j.acked_through(), epoch=j.epoch)
    assert sent > 500
    j.close()
