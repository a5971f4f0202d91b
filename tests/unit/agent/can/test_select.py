"""Selection rules and snapshots with explicit times."""

from __future__ import annotations

from agent.can.select import Rule, Selector


def test_min_interval():
    s = Selector({"a": Rule(min_interval_ms=100)})
    got = [t for t in range(0, 1000, 10) if "a" in s.offer(t, {"a": t, "b": t})]
    assert got == list(range(0, 1000, 100))
    # a signal without a rule records every value
    assert s.offer(1000, {"b": 1}) == {"b": 1} and s.offer(1001, {"b": 2}) == {"b": 2}


def test_deadband_and_heartbeat():
    s = Selector({"v": Rule(deadband=0.5, max_interval_ms=1000)})
    seq = [(0, 10.0), (10, 10.4), (20, 10.5), (30, 10.6), (40, 9.9), (1500, 9.9), (1510, 9.9)]
    got = [(t, v) for t, v in seq if s.offer(t, {"v": v})]
    assert got == [(0, 10.0), (30, 10.6), (40, 9.9), (1500, 9.9)]


def test_deadband_zero_is_on_change_also_for_choice_names():
    s = Selector({"g": Rule(deadband=0)})
    seq = ["P", "P", "D", "D", "R", "R", "P"]
    assert [v for t, v in enumerate(seq) if s.offer(t, {"g": v})] == ["P", "D", "R", "P"]


def test_clock_going_back_does_not_suppress():
    s = Selector({"a": Rule(min_interval_ms=1000)})
    assert s.offer(5000, {"a": 1}) and s.offer(100, {"a": 2}) == {"a": 2}


def test_snapshots_at_rate_with_fresh_values_only():
    s = Selector(snapshot_hz=2, snapshot_max_age_ms=1000)
    assert s.snapshot(0) is None  # arms the timer
    s.offer(100, {"a": 1, "b": "x"})
    assert s.snapshot(499) is None
    assert s.snapshot(500) == {"a": 1, "b": "x"}
    s.offer(900, {"a": 2})
    assert s.snapshot(1000) == {"a": 2, "b": "x"}
    assert s.snapshot(1800) == {"a": 2}  # b last seen at 100: too old
    assert s.snapshot(9000) is None  # after a jump: nothing fresh, grid restarts
    assert s.snapshot(9400) is None and s.next_snapshot_ms == 9500


def test_no_snapshots_unless_asked():
    s = Selector()
    s.offer(0, {"a": 1})
    assert s.snapshot(0) is None and s.snapshot(10**9) is None


def test_snapshot_grid_restarts_when_time_goes_back():
    s = Selector(snapshot_hz=1)
    s.snapshot(100_000)
    s.offer(100_500, {"a": 1})
    assert s.snapshot(101_000) == {"a": 1}
    s.offer(5_000, {"a": 2})
    assert s.snapshot(5_000) is None and s.snapshot(6_000) == {"a": 2}


def test_quiet_until_is_the_earliest_time_any_key_could_be_recorded():
    s = Selector({"a": Rule(min_interval_ms=100), "b": Rule(min_interval_ms=30),
                  "c": Rule(deadband=1.0)})
    assert s.quiet_until(0, ["a"]) == 0  # never recorded: due now
    s.offer(0, {"a": 1, "b": 1})
    assert s.quiet_until(0, ["a"]) == 100 and s.quiet_until(0, ["a", "b"]) == 30
    s.offer(40, {"a": 2, "b": 2})  # b recorded again at 40, a still held since 0
    assert s.quiet_until(40, ["a", "b"]) == 70
    assert s.quiet_until(40, ["a", "c"]) == 40  # c has no interval: every frame counts
    assert Selector(snapshot_hz=1).quiet_until(5, ["a"]) == 5  # snapshots need every value
