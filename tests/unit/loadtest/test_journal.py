"""The simulated vehicle's memory journal drains as the agent's SQLite journal does.

The reference is the agent's own `Journal` on a real SQLite file (its SQL picks the live row
and the backlog); the memory journal shares only the order rule (`plan_batch`), so the same
appends, batches and acks must give the same batches from both.
"""

import random

import cbor2
import pytest

from agent.journal import DrainState, Journal
from agent.journal_drain import plan_batch
from agent.readings import Position, Signals
from agent.wire_encode import encode
from loadtest.journal import MemoryJournal

T0 = 1_790_000_000_000


def reading(rng: random.Random, i: int):
    if rng.random() < 0.4:
        return Signals(T0 + i, "can0", {"EngineSpeed": rng.randint(600, 2200),
                                        "Odometer": 1000 + i})
    return Position(T0 + i, 53.5 + rng.random() / 10, 9.9 + rng.random() / 10,
                    speed_kmh=round(rng.uniform(0, 90), 1), sats=9)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_same_batches_and_acks_as_the_agents_journal(tmp_path, seed):
    rng = random.Random(seed)
    agent = Journal(str(tmp_path / "journal.db"))
    mem = MemoryJournal()
    made = 0
    drains = [DrainState(0), DrainState(0)]  # [agent's, memory's]
    sent: list[int] = []
    try:
        for _step in range(300):
            op = rng.random()
            if op < 0.35:  # the sources made readings
                new = [reading(rng, made + k) for k in range(rng.randint(1, 30))]
                made += len(new)
                agent.append(new)
                for r in new:
                    mem.append(encode(r), type(r) is Position)
            elif op < 0.75:  # the uplink asks for a batch
                n, budget = rng.randint(1, 40), rng.randint(50, 3000)
                a = agent.next_batch(drains[0], n, budget)
                m = mem.next_batch(drains[1], n, budget)
                # the same readings, encoded as the session encodes the agent's maps
                maps = cbor2.loads(a.cbor)
                assert m == a and m.seqs == tuple(r["q"] for r in maps)
                assert m.cbor == cbor2.dumps(maps)
                assert (drains[1].cursor, drains[1].live, drains[1].more) == (
                    drains[0].cursor, drains[0].live, drains[0].more)
                sent += a.seqs
            elif op < 0.93 and sent:  # an ack: a cumulative part and a range or two
                qs = sorted(set(sent))
                through = rng.choice(qs) if rng.random() < 0.7 else 0
                ranges = []
                for _ in range(rng.randint(0, 2)):
                    lo = rng.choice(qs)
                    ranges.append((lo, lo + rng.randint(0, 3)))
                agent.acknowledge(through, ranges)
                mem.acknowledge(through, ranges)
                assert mem.acked_through() == agent.acked_through()
                assert mem.pending == agent.stats().pending
            else:  # a new connection: drain again from what is acknowledged
                drains = [DrainState(agent.acked_through()), DrainState(mem.acked_through())]
                sent = []
        assert made > 0 and mem.pending == agent.stats().pending
    finally:
        agent.close()


def test_acknowledge_returns_the_seqs_it_deleted_once():
    mem = MemoryJournal()
    for i in range(10):
        mem.append(b"\xa0", i % 2 == 0)
    assert mem.acknowledge(3, [(6, 7), (20, 30)]) == [1, 2, 3, 6, 7]
    assert mem.acknowledge(4, [(6, 7)]) == [4]
    assert mem.acked_through() == 4 and mem.pending == 4


def test_plan_batch_puts_the_live_position_first_and_skips_it_later():
    rows = [(q, b"x" * 10) for q in range(1, 8)]
    drain = DrainState(0)
    assert [q for q, _ in plan_batch(rows[6], iter(rows), drain, 3, 1000)] == [7, 1, 2]
    assert drain.cursor == 2 and drain.live == {7} and drain.more
    assert [q for q, _ in plan_batch(rows[6], iter(rows[2:]), drain, 10, 1000)] == [3, 4, 5, 6]
    assert drain.cursor == 6 and not drain.more
