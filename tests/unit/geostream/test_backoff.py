"""Backoff and StateLog: the retry policy and the log-once helper, with exact numbers."""

import logging

import pytest

from agent.statelog import StateLog
from geostream.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_starts_over():
    b = Backoff(0.5, 4.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.attempts == 6
    b.reset()
    assert b.next() == 0.5 and b.attempts == 1


def test_jitter_shortens_each_delay_by_at_most_its_share():
    draws = iter([0.0, 1.0, 0.5])
    b = Backoff(1.0, 30.0, jitter=0.5, random=lambda: next(draws))
    assert [b.next() for _ in range(3)] == [0.5, 2.0, 3.0]  # [d/2, d] for d = 1, 2, 4


@pytest.mark.parametrize("args", [(0, 1), (2, 1), (1, 2, 0.5)])
def test_nonsense_limits_are_refused(args):
    with pytest.raises(ValueError):
        Backoff(*args[:2], factor=args[2] if len(args) > 2 else 2.0)


def test_state_log_logs_each_change_once(caplog):
    caplog.set_level(logging.INFO, logger="t")
    s = StateLog(logging.getLogger("t"), "bus0", "closed", warn={"down"})
    assert s.set("closed") is False  # the initial state again: nothing to say
    for _ in range(3):
        s.set("down", "cannot open")
    s.set("up")
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert msgs == [(logging.WARNING, "bus0: down (cannot open)"), (logging.INFO, "bus0: up")]
    assert s.changes == 2 and s.state == "up"


def test_state_log_first_and_detail_changes(caplog):
    caplog.set_level(logging.INFO, logger="t")
    s = StateLog(logging.getLogger("t"), "x", "a", log_first=True, detail_changes=True)
    s.set("a", "why")  # first: logged although the state is the initial one
    s.set("a", "why")
    s.set("a", "other reason")
    assert [r.getMessage() for r in caplog.records] == ["x: a (why)", "x: a (other reason)"]
