"""CommittedRanges: what this process committed, as ranges of sequence numbers."""

import random

from backend.store.committed import CommittedRanges


def test_unknown_vehicle_or_epoch_is_not_stored():
    c = CommittedRanges()
    c.add("v", 1, [1, 2, 3])
    assert not c.maybe_stored("w", 1, 2)
    assert not c.maybe_stored("v", 2, 2)
    assert [c.maybe_stored("v", 1, q) for q in range(5)] == [False, True, True, True, False]


def test_ranges_join_and_keep_their_gaps():
    c = CommittedRanges()
    c.add("v", 1, [10, 11, 12])   # live readings first
    c.add("v", 1, [1, 2, 3])      # then the backlog's oldest
    c.add("v", 1, [5, 6])
    assert [q for q in range(15) if c.maybe_stored("v", 1, q)] == [1, 2, 3, 5, 6, 10, 11, 12]
    c.add("v", 1, [4, 7, 8, 9])   # closes both gaps
    assert c._ranges[("v", 1)] == ([1], [12])
    assert all(c.maybe_stored("v", 1, q) for q in range(1, 13))


def test_against_a_set_in_any_order():
    rng = random.Random(5)
    c, truth = CommittedRanges(max_ranges=10_000), set()
    for _ in range(300):
        start = rng.randrange(1, 500)
        seqs = [q for q in range(start, start + rng.randrange(1, 8)) if rng.random() < 0.8]
        rng.shuffle(seqs)
        c.add("v", 1, seqs)
        truth.update(seqs)
    assert {q for q in range(0, 520) if c.maybe_stored("v", 1, q)} == truth
    los, his = c._ranges[("v", 1)]
    assert all(h + 1 < lo for h, lo in zip(his, los[1:], strict=False))  # disjoint, not touching


def test_bounded_ranges_forget_the_lowest_and_keys_the_oldest():
    c = CommittedRanges(max_ranges=2, max_keys=2)
    c.add("v", 1, [1, 3, 5])
    assert not c.maybe_stored("v", 1, 1) and c.maybe_stored("v", 1, 3)
    c.add("w", 1, [1])
    c.add("v", 1, [7])            # v is the most recent again
    c.add("x", 1, [1])            # w, the least recent, is forgotten
    assert len(c) == 2
    assert not c.maybe_stored("w", 1, 1) and c.maybe_stored("x", 1, 1)
    assert c.maybe_stored("v", 1, 7)


def test_one_number_at_a_time_against_a_set():
    """At 1 Hz a vehicle's transactions add one number each, mostly the next one (the newest
    range grows in place); gaps, repeats and older numbers between them keep the ranges right."""
    rng = random.Random(7)
    c, truth = CommittedRanges(max_ranges=10_000), set()
    q = 100
    for _ in range(2000):
        r = rng.random()
        q = q + 1 if r < 0.8 else q + rng.randrange(2, 5) if r < 0.9 else rng.randrange(1, q + 1)
        c.add("v", 1, [q])
        truth.add(q)
        assert [c.maybe_stored("v", 1, n) for n in range(q - 2, q + 3)] == [
            n in truth for n in range(q - 2, q + 3)]
    assert {n for n in range(0, max(truth) + 10) if c.maybe_stored("v", 1, n)} == truth
    los, his = c._ranges[("v", 1)]
    assert all(lo <= hi for lo, hi in zip(los, his, strict=True))
    assert all(h + 1 < lo for h, lo in zip(his, los[1:], strict=False))  # disjoint, not touching
