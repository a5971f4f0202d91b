"""The timer wheel of the gateway's edge and the load generator (sans-IO): deadlines served a
slot at a time, never early, at most a slot late, each owner once, moves later and earlier and
cancels honoured, a bounded pop leaving the rest due."""

import random

from geostream.timer_wheel import TimerWheel

TICK = 0.01


def test_a_deadline_fires_at_the_end_of_its_slot_never_early():
    w = TimerWheel(TICK)
    w.set("a", 1.003)
    assert w.earliest() is not None and 1.003 < w.earliest() <= 1.003 + TICK
    assert w.pop_due(1.003) == []            # not before its slot ends
    assert w.pop_due(w.earliest()) == ["a"]
    assert w.pop_due(9.0) == [] and len(w) == 0


def test_moves_later_earlier_and_cancels():
    w = TimerWheel(TICK)
    w.set("later", 1.0)
    w.set("later", 2.0)                      # stays filed at 1.0's slot, filed again there
    w.set("earlier", 3.0)
    w.set("earlier", 0.5)
    w.set("gone", 0.5)
    w.set("gone", None)
    assert w.pop_due(0.6) == ["earlier"]
    assert w.pop_due(1.5) == []              # "later" moved on, not due
    assert w.at("later") == 2.0
    assert w.pop_due(2.5) == ["later"]
    assert w.pop_due(3.5) == []              # "earlier"'s first slot: nothing left in it
    assert w.earliest() is None and len(w) == 0


def test_a_limited_pop_leaves_the_rest_due():
    """The gateway's edge handles at most so many deadlines per callback: the rest stay due,
    `earliest` still says so, and the next pops serve them, each once."""
    w = TimerWheel(TICK)
    for i in range(10):
        w.set(f"c{i}", 1.0 + i * 0.001)  # one slot
    w.set("next-slot", 1.05)
    w.set("late", 5.0)
    first = w.pop_due(2.0, limit=4)
    assert len(first) == 4
    assert w.earliest() is not None and w.earliest() <= 2.0, "the rest are still due"
    second = w.pop_due(2.0, limit=4)
    third = w.pop_due(2.0)
    assert len(second) == 4 and len(third) == 3
    assert sorted(first + second + third) == sorted([f"c{i}" for i in range(10)] + ["next-slot"])
    assert w.at("late") == 5.0 and w.pop_due(2.0, limit=4) == []
    assert len(w) == 1


def test_a_limit_reached_on_a_superseded_entry_loses_nothing():
    """Entries skipped in a bounded pop (moved later, cleared) do not count against it."""
    w = TimerWheel(TICK)
    for i in range(6):
        w.set(i, 1.0)
    for i in range(0, 6, 2):
        w.set(i, 3.0 if i else None)  # 0 cleared, 2 and 4 moved later
    assert sorted(w.pop_due(1.5, limit=2) + w.pop_due(1.5, limit=2)) == [1, 3, 5]
    assert w.pop_due(1.5) == [] and sorted(w.pop_due(3.5)) == [2, 4] and len(w) == 0


def test_random_deadlines_match_a_plain_reference():
    """Against a dict of deadlines and a sort: every owner due by `now` comes out exactly
    once, the others stay."""
    rng = random.Random(7)
    w, ref = TimerWheel(TICK), {}
    now = 0.0
    for _ in range(300):
        for _ in range(rng.randrange(1, 20)):
            owner, when = rng.randrange(50), now + rng.uniform(-0.05, 2.0)
            if rng.random() < 0.1:
                when = None
            w.set(owner, when)
            if when is None:
                ref.pop(owner, None)
            else:
                ref[owner] = when
        now += rng.uniform(0.0, 0.1)
        got = w.pop_due(now, limit=rng.choice((None, 1, 3)))
        got += w.pop_due(now)  # what a bounded pop left
        assert len(got) == len(set(got))
        for owner in got:
            assert ref.pop(owner) <= now
        # what stays is due after now, or in a slot that has not ended yet
        assert all(when > now or (int(when / TICK) + 1) * TICK > now
                   for when in ref.values())
    assert len(w) == len(ref)


def test_overdue_names_the_owners_due_longest_ago():
    w = TimerWheel(TICK)
    for owner, when in (("a", 5.0), ("b", 1.0), ("c", 3.0), ("d", 9.0)):
        w.set(owner, when)
    assert w.overdue(6.0, 2) == [("b", 1.0), ("c", 3.0)]
    assert w.overdue(0.5, 2) == []
