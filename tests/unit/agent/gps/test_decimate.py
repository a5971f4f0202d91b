"""Decimation on an injected clock (GNSS time or an explicit now_ms)."""

from agent.gps.decimate import Decimator
from agent.readings import Position


def fix(t_s: float, lat=48.0, lon=11.0, speed=0.0, course=90.0) -> Position:
    return Position(ts_ms=round(t_s * 1000), lat=lat, lon=lon, speed_kmh=speed,
                    course_deg=course)


def passed(dec: Decimator, fixes) -> list[float]:
    return [f.ts_ms / 1000 for f in fixes if dec.offer(f)]


def test_parked_vehicle_is_thinned_to_the_parked_interval():
    dec = Decimator(min_interval_s_parked=10, parked_speed_kmh=3)
    assert passed(dec, [fix(t) for t in range(35)]) == [0, 10, 20, 30]


def test_moving_vehicle_at_full_rate_when_interval_is_zero():
    dec = Decimator(min_interval_s_moving=0, min_heading_change_deg=0)
    fixes = [fix(t / 5, speed=50) for t in range(10)]
    assert len(passed(dec, fixes)) == 10


def test_start_of_motion_passes_at_once():
    dec = Decimator(min_interval_s_parked=60, min_interval_s_moving=5)
    fixes = [fix(0), fix(1), fix(2, speed=20), fix(3, speed=25), fix(7, speed=25),
             fix(8, speed=0)]
    assert passed(dec, fixes) == [0, 2, 7, 8]


def test_distance_rule_while_moving_slowly_and_heading_rule_in_a_turn():
    dec = Decimator(min_interval_s_moving=30, min_distance_m=100, min_heading_change_deg=0)
    # 0.0005 deg latitude ~ 55.6 m per step
    fixes = [fix(t, lat=48.0 + 0.0005 * t, speed=20, course=0) for t in range(6)]
    assert passed(dec, fixes) == [0, 2, 4]
    turn = Decimator(min_interval_s_moving=30, min_heading_change_deg=20)
    headings = [350, 355, 5, 12, 30, 40, 49]  # crosses north: 350 -> 12 is 22 degrees
    fixes = [fix(t, speed=30, course=c) for t, c in enumerate(headings)]
    assert passed(turn, fixes) == [0, 3, 5]


def test_heading_rule_ignored_when_parked():
    dec = Decimator(min_interval_s_parked=30, min_heading_change_deg=5)
    fixes = [fix(t, speed=0.5, course=(t * 40) % 360) for t in range(10)]
    assert passed(dec, fixes) == [0]


def test_explicit_clock_overrides_fix_time():
    dec = Decimator(min_interval_s_parked=10)
    p = fix(0)
    assert dec.offer(p, now_ms=1_000)
    assert not dec.offer(p, now_ms=5_000)
    assert dec.offer(p, now_ms=11_000)
    assert dec.offer(p, now_ms=500)  # clock stepped back: resynchronise, do not stall
