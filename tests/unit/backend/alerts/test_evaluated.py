"""`backend/alerts/evaluated.py` against a plain set of every (epoch, seq) evaluated: it never
claims a reading that was not evaluated (a repeat it skips must be in the state), and it knows
a run the agent numbers one by one, with the few holes a live-first drain leaves."""

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.alerts.evaluated import MAX_HOLES, NOTHING, includes, longest_run, noted

batches = st.lists(st.lists(st.tuples(st.sampled_from([3, 7, 9]), st.integers(1, 300)),
                            max_size=40), max_size=12)


@settings(max_examples=300, deadline=None)
@given(batches)
def test_it_claims_only_readings_evaluated(steps):
    span, seen = NOTHING, set()
    for keys in steps:
        span = noted(span, keys)
        seen.update(keys)
        newest = max(e for e, _ in seen) if seen else None
        for epoch in (3, 7, 9):
            for seq in range(0, 302):
                if includes(span, epoch, seq):
                    assert (epoch, seq) in seen and epoch == newest
        assert span[3] is None or len(span[3]) <= MAX_HOLES


def test_a_run_with_holes_the_backlog_fills():
    span = noted(NOTHING, [(7, s) for s in range(1, 21)])
    span = noted(span, [(7, 30)])  # the drain's newest first: 21..29 not yet
    assert [s for s in range(0, 32) if includes(span, 7, s)] == [*range(1, 21), 30]
    span = noted(span, [(7, s) for s in range(21, 30)])
    assert span == (7, 1, 30, None)
    assert not includes(span, 6, 5) and not includes(span, 7, 31)


def test_far_ahead_forgets_what_came_before():
    span = noted(noted(NOTHING, [(7, s) for s in range(1, 11)]), [(7, 11 + MAX_HOLES + 1)])
    assert span == (7, 11 + MAX_HOLES + 1, 11 + MAX_HOLES + 1, None)
    # a newer epoch starts over; an older one's readings are not known
    span = noted(span, [(8, 1), (7, 200)])
    assert span == (8, 1, 1, None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([3, 7]), st.integers(1, 40)), max_size=60))
def test_the_longest_run_holds_only_given_keys_and_none_is_longer(keys):
    """A replay leaves the run out of its store read: a key in it that was not given would be
    a reading lost to the evaluation."""
    run = longest_run(keys)
    given_ = set(keys)
    if not given_:
        assert run is None
        return
    e, low, high = run
    assert all((e, s) in given_ for s in range(low, high + 1))
    for e2, s in given_:  # no run of the keys is longer
        n = 1
        while (e2, s + n) in given_:
            n += 1
        assert n <= high - low + 1


def test_the_longest_run_of_a_batch():
    assert longest_run([(7, 5), (7, 3), (7, 4), (7, 9), (8, 1), (8, 2)]) == (7, 3, 5)
    assert longest_run([(7, 1)]) == (7, 1, 1)
