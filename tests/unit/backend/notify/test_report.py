"""Reports, pure: movement from positions, the summary of a period, which period is due."""

from datetime import UTC, datetime, time

from backend.dispatch.model import Actor, ActorKind, JobState, Transition
from backend.notify.report import movement, report_period, summarise
from backend.store.rows import StoredAlert

S = JobState
BY = Actor(ActorKind.RULE, "detector")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_movement_counts_driving_idle_and_skips_gaps():
    # 0.01° of latitude ≈ 1.112 km; 60 s at 66.7 km/h, then 120 s parked, a 10-minute gap
    pts = [{"time_ms": 0, "lat": 60.0, "lon": 24.0, "speed_kmh": 66.7},
           {"time_ms": 60_000, "lat": 60.01, "lon": 24.0, "speed_kmh": 0.0},
           {"time_ms": 180_000, "lat": 60.01, "lon": 24.0, "speed_kmh": 0.0},
           {"time_ms": 780_000, "lat": 60.5, "lon": 24.0, "speed_kmh": 80.0}]
    km, driving, idle = movement(pts)
    assert abs(km - 1.112) < 0.002 and driving == 60 and idle == 120


def t(job, to, at, frm=S.ARRIVED):
    return Transition(f"{job}-{to.value}", job, frm, to, at, BY, at, route_id="r1")


def test_summary_of_a_day():
    start, end = ms("2026-12-05 00:00"), ms("2026-12-06 00:00")
    transitions = [(t("a", S.ARRIVED, ms("2026-12-05 09:00"), S.EN_ROUTE), "van-1"),
                   (t("a", S.COMPLETED, ms("2026-12-05 09:10")), "van-1"),
                   (t("b", S.ARRIVED, ms("2026-12-05 11:30"), S.EN_ROUTE), "van-1"),
                   (t("b", S.COMPLETED, ms("2026-12-05 11:40")), "van-1"),
                   (t("c", S.FAILED, ms("2026-12-05 12:00")), "van-2"),
                   (t("d", S.COMPLETED, ms("2026-12-06 08:00")), "van-2")]  # the next day
    alerts = [StoredAlert(1, "speeding", "van-2", "", ms("2026-12-05 10:00"), None, 90.0,
                          "closed", None, None, {}, 0),
              StoredAlert(2, "speeding", "van-2", "", ms("2026-12-05 10:30"), None, 91.0,
                          "retracted", None, None, {}, 0)]
    windows = {"a": ms("2026-12-05 10:00"), "b": ms("2026-12-05 11:00")}  # b arrived late
    rep = summarise("Fleet", start, end, "UTC", {"van-1": [], "van-2": []}, transitions,
                    alerts, windows)
    rows = {v.vehicle: v for v in rep.vehicles}
    assert (rows["van-1"].stops_done, rows["van-1"].late, rows["van-1"].failed) == (2, 1, 0)
    assert (rows["van-2"].stops_done, rows["van-2"].failed, rows["van-2"].alerts) == (0, 1, 1)
    total = rep.totals()
    assert (total.stops_done, total.late, total.failed, total.alerts) == (2, 1, 1, 1)


def test_the_due_period_is_the_newest_complete_one_in_local_time():
    # Helsinki is UTC+2 in December: 07:00 local is 05:00 UTC
    assert report_period("daily", time(7), "Europe/Helsinki", ms("2026-12-06 05:30")) == (
        ms("2026-12-05 05:00"), ms("2026-12-06 05:00"))
    assert report_period("daily", time(7), "Europe/Helsinki", ms("2026-12-06 04:59")) == (
        ms("2026-12-04 05:00"), ms("2026-12-05 05:00"))
    # 2026-12-06 is a Sunday: the week ending on Monday 2026-11-30 at 07:00 UTC
    assert report_period("weekly", time(7), "UTC", ms("2026-12-06 12:00")) == (
        ms("2026-11-23 07:00"), ms("2026-11-30 07:00"))
