"""The wake-up grid (agent/ticks.py): tick arithmetic and the stamps of a tick's read."""

from __future__ import annotations

import pytest

from agent.ticks import TICK_S, next_tick, spread_ms


@pytest.mark.parametrize("now", [0.0, 0.03, 0.1, 10_000.0, 10_000.0999, 123_456.789])
def test_next_tick_is_the_first_multiple_strictly_after_now(now):
    at = next_tick(now, 0.1)
    assert now < at <= now + 0.1 + 1e-9
    assert abs(at / 0.1 - round(at / 0.1)) < 1e-6


def test_periods_that_are_multiples_of_the_tick_fall_due_on_its_ticks():
    for now in (10_000.0, 10_000.05, 10_000.33, 98_765.4321):
        for every in (0.2, 0.5, 10.0):
            at = next_tick(now, every)
            assert abs(at / TICK_S - round(at / TICK_S)) < 1e-6  # a tick the CAN read shares
            assert at >= next_tick(now, TICK_S) - 1e-9


def test_spread_stamps_are_in_order_inside_the_interval_and_end_at_the_read():
    stamps = spread_ms(1_000, 1_100, 7)
    assert stamps == sorted(stamps) and len(stamps) == 7
    assert stamps[0] > 1_000 and stamps[-1] == 1_100
    assert spread_ms(1_000, 1_100, 1) == [1_100]
    assert spread_ms(1_000, 1_100, 0) == []
    gaps = {b - a for a, b in zip(stamps, stamps[1:], strict=False)}
    assert max(gaps) - min(gaps) <= 1  # evenly


def test_spread_with_a_clock_that_stepped_back_stamps_all_at_the_read():
    assert spread_ms(5_000, 4_000, 3) == [4_000, 4_000, 4_000]
    assert spread_ms(5_000, 5_000, 2) == [5_000, 5_000]
