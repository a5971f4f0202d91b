"""Dates: week rollover, dateless (GGA-only) epochs, host clock, and nmea-decode's switches."""

import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

from agent.gps import NmeaDecoder
from agent.gps.cli import main
from agent.gps.epoch import MAX_HELD
from agent.gps.hostclock import host_clock_synchronised
from agent.gps.rollover import BUILD_DATE, GPS_ROLLOVER, RolloverResolver, nearest_periods

ROOT = Path(__file__).parent.parent.parent
GPSD = ROOT / "tests" / "data" / "gpsd"


def ms(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


def gga(nmea, hhmmss: str) -> bytes:
    return nmea(f"GPGGA,{hhmmss}.00,4807.0000,N,01131.0000,E,1,08,0.9,500.0,M,47.0,M,,")


def rmc(nmea, hhmmss: str, ddmmyy: str) -> bytes:
    return nmea(f"GPRMC,{hhmmss}.00,A,4807.0000,N,01131.0000,E,0.0,0.0,{ddmmyy},,,A")


def test_build_date_is_not_older_than_the_newest_changelog_entry():
    text = (ROOT / "debian" / "changelog").read_text()
    dates = [dt.datetime.strptime(m, "%d %b %Y").date()
             for m in re.findall(r"^ -- .*?, (\d\d? \w{3} \d{4})", text, re.M)]
    assert dates and BUILD_DATE >= max(dates)


def test_rollover_by_one_and_two_periods_and_pivot_advances():
    counts = Counter()
    r = RolloverResolver(counts, pivot=dt.date(2026, 1, 1))
    assert r.resolve(dt.date(2026, 5, 1)) == dt.date(2026, 5, 1) and r.pivot == dt.date(2026, 5, 1)
    assert r.resolve(dt.date(2006, 9, 15)) == dt.date(2006, 9, 15) + GPS_ROLLOVER
    assert r.resolve(dt.date(1987, 1, 31)) == dt.date(1987, 1, 31) + 2 * GPS_ROLLOVER
    assert counts["rollover_corrected"] == 2
    # a date a year before is genuine; a corrupt far-future date does not move the pivot
    assert r.resolve(dt.date(2025, 5, 1)) == dt.date(2025, 5, 1)
    r.resolve(dt.date(2090, 1, 1))
    assert r.pivot == dt.date(2026, 5, 1)


def test_a_genuine_date_years_before_the_pivot_is_never_carried_past_it(nmea):
    # A Furuno GT-88 reporting its correct 2022 date, decoded against the build-date pivot
    # (2026): adding 1024 weeks to every date before the pivot made it 2042.
    dec = NmeaDecoder()
    fixes = dec.feed(rmc(nmea, "093012", "140622") + gga(nmea, "093012")) + dec.flush()
    assert [p.ts_ms for p in fixes] == [ms(2022, 6, 14, 9, 30, 12)]
    assert dec.counts["rollover_corrected"] == 0
    # the rule: whole periods toward the pivot, ending nearest it, never more than half a
    # period past it, never farther from it than the date was
    pivot = BUILD_DATE
    for days_before in range(-4000, 3 * 7168, 97):
        date = pivot - dt.timedelta(days=days_before)
        moved = date + nearest_periods(date, pivot) * GPS_ROLLOVER
        assert moved >= date and abs(moved - pivot) <= abs(date - pivot)
        assert moved == date or (pivot - date > GPS_ROLLOVER / 2
                                 and moved - pivot <= GPS_ROLLOVER / 2)


def test_gga_only_epochs_wait_for_the_first_date_across_midnight(nmea):
    dec = NmeaDecoder()
    data = gga(nmea, "235958") + gga(nmea, "235959") + gga(nmea, "000000")
    assert dec.feed(data) == []
    fixes = dec.feed(rmc(nmea, "000001", "020626") + gga(nmea, "000001")) + dec.flush()
    assert [p.ts_ms for p in fixes] == [ms(2026, 6, 1, 23, 59, 58), ms(2026, 6, 1, 23, 59, 59),
                                        ms(2026, 6, 2), ms(2026, 6, 2, 0, 0, 1)]
    assert dec.counts["held"] == 3 and dec.counts["no_date"] == 0


def test_a_receiver_that_never_sends_a_date_is_bounded_without_host_clock(nmea):
    dec = NmeaDecoder()
    data = b"".join(gga(nmea, f"1000{s:02d}") for s in range(MAX_HELD + 5))
    assert dec.feed(data) + dec.flush() == []
    assert dec.counts["no_date"] == MAX_HELD + 5


def test_a_synchronised_host_clock_dates_gga_only_receivers(nmea):
    dec = NmeaDecoder()
    host = ms(2026, 6, 2, 0, 0, 0, 300)  # just after midnight: the fix is from yesterday
    fixes = dec.feed(gga(nmea, "235959"), host_time_ms=host, host_synced=True)
    fixes += dec.feed(gga(nmea, "000000"), host_time_ms=host + 1000, host_synced=True)
    assert [p.ts_ms for p in fixes] == [ms(2026, 6, 1, 23, 59, 59)]
    assert dec.counts["host_dated"] == 1
    # an unsynchronised host clock is never used for the date
    dec = NmeaDecoder()
    assert dec.feed(gga(nmea, "235959") + gga(nmea, "000000"), host_time_ms=host) == []


def test_the_receivers_date_wins_over_the_host_clock(nmea):
    dec = NmeaDecoder()
    host = ms(2026, 6, 9, 12)  # host clock a week off
    data = rmc(nmea, "101500", "010626") + gga(nmea, "101500") + gga(nmea, "101501")
    fixes = dec.feed(data, host_time_ms=host, host_synced=True) + dec.flush()
    assert [p.ts_ms for p in fixes] == [ms(2026, 6, 1, 10, 15), ms(2026, 6, 1, 10, 15, 1)]
    assert dec.counts["host_dated"] == 0


def test_empty_void_sentences_do_not_veto_the_next_epoch(nmea):
    data = (nmea("GPRMC,,V,,,,,,,,,,N") + nmea("GPGGA,,,,,,0,,,,,,,,")
            + rmc(nmea, "101500", "010626") + gga(nmea, "101500"))
    dec = NmeaDecoder()
    assert len(dec.feed(data) + dec.flush()) == 1


def test_zero_satellites_is_no_fix(nmea):
    dec = NmeaDecoder()
    data = rmc(nmea, "101500", "010626") + nmea(
        "GPGGA,101500.00,4807.0000,N,01131.0000,E,1,00,3.3,500.0,M,47.0,M,,")
    assert dec.feed(data) + dec.flush() == [] and dec.counts["no_fix"] == 1


def test_host_clock_check_answers_a_bool():
    assert host_clock_synchronised() in (True, False)


def test_nmea_decode_default_filters_and_raw_does_not(capsys):
    capture = str(GPSD / "telit-he910.log")
    assert main(["--pivot", "2018-01-01", capture]) == 0
    filtered, err = capsys.readouterr()
    assert json.loads(err.splitlines()[-1])["time_backwards"] == 1
    assert main(["--pivot", "2018-01-01", "--raw", capture]) == 0
    raw, err = capsys.readouterr()
    assert len(raw.splitlines()) == len(filtered.splitlines()) + 1
    assert "time_backwards" not in json.loads(err.splitlines()[-1])


def test_stream_asks_the_kernel_once_a_minute_and_dates_gga_only_fixes(nmea):
    from agent.gps.stream import SYNC_CHECK_S, NmeaStream
    from agent.sources import SourceState
    from agent.statelog import StateLog

    now = [1_780_000_000.0]  # 2026-05-28T20:26:40Z: the fixes below are that evening
    asked = []

    def synced() -> bool:
        asked.append(now[0])
        return True

    import logging
    state = StateLog(logging.getLogger(), "gps", SourceState.CLOSED)
    stream = NmeaStream(NmeaDecoder(), None, Counter(), state, 3.0, lambda: now[0],
                        synced=synced)
    out = []
    for s in range(5):
        stream.feed(gga(nmea, f"2146{40 + s:02d}"), out.append)
        now[0] += 1
    assert [p.ts_ms for p in out] == [ms(2026, 5, 28, 21, 46, 40 + s) for s in range(5)]
    assert asked == [1_780_000_000.0]  # once per SYNC_CHECK_S, not per read
    now[0] += SYNC_CHECK_S
    stream.feed(b"", out.append)
    assert len(asked) == 2


def test_a_synchronised_host_clock_is_a_rollover_pivot(nmea):
    # in 2045 a receiver 1024 weeks behind reports 2026-02-01: within a year of the build date,
    # so the build-date pivot alone takes it as genuine; a synchronised host clock does not
    host = ms(2045, 9, 17, 10, 15)
    dec = NmeaDecoder()
    fixes = dec.feed(rmc(nmea, "101500", "010226") + gga(nmea, "101500"), host_time_ms=host,
                     host_synced=True) + dec.flush()
    day = dt.datetime.fromtimestamp(fixes[0].ts_ms / 1000, dt.UTC).date()
    assert day == dt.date(2026, 2, 1) + GPS_ROLLOVER and dec.counts["rollover_corrected"] == 1
    dec = NmeaDecoder()  # unsynchronised: the host clock is not trusted as a pivot
    fixes = dec.feed(rmc(nmea, "101500", "010226") + gga(nmea, "101500"), host_time_ms=host)
    fixes += dec.flush()
    assert dt.datetime.fromtimestamp(fixes[0].ts_ms / 1000, dt.UTC).date() == dt.date(2026, 2, 1)
