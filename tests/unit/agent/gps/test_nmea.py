"""NmeaDecoder behaviour sentence by sentence: epochs, validation, plausibility."""

import datetime as dt

import pytest

from agent.gps import NmeaDecoder
from agent.gps.sanity import REANCHOR_AFTER


def ms(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


def epoch(nmea, s: int, lat="4807.0000", date="010626", q=1, status="A") -> bytes:
    t = f"1015{s:02d}.00"
    return (nmea(f"GNRMC,{t},{status},{lat},N,01131.0000,E,5.0,45.0,{date},,,A")
            + nmea(f"GNGGA,{t},{lat},N,01131.0000,E,{q},09,0.8,500.0,M,47.0,M,,")
            + nmea(f"GNGLL,{lat},N,01131.0000,E,{t},{status},A"))


def decode(data: bytes, **kw):
    dec = NmeaDecoder(**kw)
    return dec.feed(data) + dec.flush(), dec


def test_one_reading_per_epoch_with_fields_from_each_sentence(nmea):
    data = (nmea("GNRMC,101500.00,A,4807.0000,N,01131.0000,E,10.0,45.0,010626,,,D")
            + nmea("GNVTG,45.0,T,,M,10.0,N,18.52,K,D")
            + nmea("GNGGA,101500.00,4807.0000,N,01131.0000,E,2,11,0.7,512.3,M,47.0,M,,")
            + nmea("GPGSA,A,2,05,07,,,,,,,,,,,1.5,0.9,1.1")
            + nmea("GNGSA,A,3,05,07,,,,,,,,,,,1.5,0.9,1.1"))
    (p,), dec = decode(data)
    assert p.ts_ms == ms(2026, 6, 1, 10, 15) and p.lat == 48.1166667 and p.lon == 11.5166667
    assert (p.fix, p.mode, p.sats, p.hdop, p.alt_m) == (2, 3, 11, 0.7, 512.3)
    assert (p.speed_kmh, p.course_deg) == (18.52, 45.0)
    assert dec.counts["sentences"] == 5 and dec.counts["epochs"] == 1


def test_emits_at_the_learned_cycle_end_without_waiting(nmea):
    dec = NmeaDecoder()
    assert dec.feed(epoch(nmea, 0)) == []
    assert len(dec.feed(epoch(nmea, 1))) == 1  # epoch 0 closed by the new time
    out = dec.feed(epoch(nmea, 2))
    assert [p.ts_ms % 60_000 for p in out] == [1000, 2000]  # GLL now ends the cycle
    assert dec.feed(epoch(nmea, 3))[0].ts_ms % 60_000 == 3000


def test_clock_offset_is_host_minus_gnss(nmea):
    dec = NmeaDecoder()
    gnss = ms(2026, 6, 1, 10, 15)
    dec.feed(epoch(nmea, 0), host_time_ms=gnss + 250)
    (p,) = dec.flush()
    assert p.ts_ms == gnss and p.clock_offset_ms == 250


def test_talkers_and_ignored_sentences(nmea):
    data = (nmea("GQGGA,101500.00,4807.0,N,01131.0,E,1,09,0.8,5.0,M,,M,,")
            + nmea("PUBX,00,101500.00,4807.0,N") + nmea("GPGSV,1,1,01,05,40,083,46")
            + nmea("GPTXT,01,01,02,ANTSTATUS=OK"))
    fixes, dec = decode(data)
    assert fixes == []
    assert dec.counts["unknown_talker"] == 1 and dec.counts["ignored"] == 3
    # the same epoch from every accepted single-constellation talker is still one reading
    fixes, _ = decode(b"".join(
        nmea(line.decode()[1:-5].replace("GN", t, 1))
        for t in ("GP", "GL", "GA", "GB", "BD") for line in epoch(nmea, 0).splitlines(True)))
    assert len(fixes) == 1


@pytest.mark.parametrize("bad", [
    "GNGGA,101500.00,4860.0000,N,01131.0000,E,1,09,0.8,500.0,M,47.0,M,,",  # minutes 60
    "GNGGA,101500.00,9100.0000,N,01131.0000,E,1,09,0.8,500.0,M,47.0,M,,",  # lat 91
    "GNGGA,101500.00,4807.0000,X,01131.0000,E,1,09,0.8,500.0,M,47.0,M,,",  # hemisphere
    "GNGGA,106500.00,4807.0000,N,01131.0000,E,1,09,0.8,500.0,M,47.0,M,,",  # minute 65
    "GNGGA,101500.00,4807.0000,N,01131.0000,E,9,09,0.8,500.0,M,47.0,M,,",  # quality 9
    "GNGGA,101500.00,4807.0000,N,01131.0000,E,1,09,nan,500.0,M,47.0,M,,",  # NaN hdop
    "GNGGA,101500.00,4807.0000,N,,,1,09,0.8,500.0,M,47.0,M,,",  # half a position
    "GNRMC,101500.00,A,4807.0000,N,01131.0000,E,5.0,45.0,320626,,,A",  # 32 June
    "GNRMC,101500.00,A,4807.0000,N,01131.0000,E,5.0,400.0,010626,,,A",  # course 400
])
def test_invalid_fields_are_counted_and_never_a_fix(nmea, bad):
    fixes, dec = decode(nmea(bad))
    assert fixes == [] and dec.counts["bad_field"] == 1


def test_void_and_quality_zero_are_no_fix_never_zero_zero(nmea):
    data = (epoch(nmea, 0, q=0) + epoch(nmea, 1, status="V")
            + nmea("GNRMC,101502.00,V,,,,,,,010626,,,N")
            + nmea("GNGGA,101502.00,,,,,0,00,99.9,,,,,,")
            + nmea("GNGGA,101503.00,,,,,1,05,2.0,,,,,,"))
    fixes, dec = decode(data)
    assert fixes == [] and dec.counts["no_fix"] == 4


def test_missing_checksum_is_configurable(nmea):
    bare = b"".join(line.split(b"*")[0] + b"\r\n" for line in epoch(nmea, 0).splitlines())
    fixes, dec = decode(bare)
    assert fixes == [] and dec.counts["no_checksum"] == 3
    fixes, _ = decode(bare, require_checksum=False)
    assert len(fixes) == 1


def test_truncated_and_overlong_lines(nmea):
    good = epoch(nmea, 0)
    cut = good[:25] + good  # a line cut short, followed by the real ones
    fixes, dec = decode(cut)  # the cut line spoils the epoch it may belong to
    assert len(fixes) == 0 and dec.counts["truncated"] == 1
    # once the cycle's end is known, only the epoch of the cut line gives no position
    e4 = epoch(nmea, 4)
    cut_rmc = e4[:25] + e4[e4.index(b"\n") + 1:]
    steady = b"".join(epoch(nmea, s) for s in range(4))
    fixes, dec = decode(steady + cut_rmc + epoch(nmea, 5))
    assert [p.ts_ms for p in fixes] == [ms(2026, 6, 1, 10, 15, s) for s in (0, 1, 2, 3, 5)]
    assert dec.counts["truncated"] == 1 and dec.counts["incomplete_epoch"] == 1
    long = nmea("GNGGA,101500.00,4807.0000,N,01131.0000,E,1,09,0.8,500.0,M,47.0,M,," + "0" * 90)
    fixes, dec = decode(long)
    assert fixes == [] and dec.counts["overlong"] == 1


def test_date_from_zda_carries_over_midnight(nmea):
    data = nmea("GPZDA,235959.00,31,12,2026,00,00") + b"".join(
        nmea(f"GPGGA,{t},4807.0,N,01131.0,E,1,08,0.9,1.0,M,,M,,")
        for t in ("235959.00", "000000.00", "000001.00"))
    fixes, _ = decode(data)
    assert [p.ts_ms for p in fixes] == [ms(2026, 12, 31, 23, 59, 59), ms(2027, 1, 1),
                                        ms(2027, 1, 1, 0, 0, 1)]


def test_no_date_yet_and_week_rollover_dates(nmea):
    fixes, dec = decode(nmea("GPGGA,101500.00,4807.0,N,01131.0,E,1,08,0.9,1.0,M,,M,,"))
    assert fixes == [] and dec.counts["no_date"] == 1
    fixes, dec = decode(epoch(nmea, 0, date="061106"))  # 2006: 1024 weeks before 2026-06-22
    assert dec.counts["rollover_corrected"] == 1
    assert [p.ts_ms // 1000 for p in fixes] == [1782123300]  # 2026-06-22T10:15:00Z


def test_time_going_backwards_is_dropped_then_reanchored(nmea):
    data = epoch(nmea, 30) + b"".join(epoch(nmea, s) for s in range(REANCHOR_AFTER + 1))
    fixes, dec = decode(data)
    assert dec.counts["time_backwards"] == REANCHOR_AFTER and dec.counts["reanchored"] == 1
    assert [p.ts_ms % 60_000 // 1000 for p in fixes] == [30, REANCHOR_AFTER - 1, REANCHOR_AFTER]


def test_impossible_jump_is_dropped(nmea):
    data = epoch(nmea, 0) + epoch(nmea, 1, lat="4907.0000") + epoch(nmea, 2, lat="4807.0100")
    fixes, dec = decode(data)
    assert [p.ts_ms % 60_000 for p in fixes] == [0, 2000] and dec.counts["jump"] == 1


def test_truck_moving_fast_is_not_a_jump(nmea):
    # 0.0250 minutes of latitude per second ~ 46 m/s ~ 167 km/h: plausible on a motorway
    data = b"".join(epoch(nmea, s, lat=f"{4807 + 0.025 * s:.4f}") for s in range(5))
    fixes, dec = decode(data)
    assert len(fixes) == 5 and dec.counts["jump"] == 0


@pytest.mark.parametrize("fake", [b"\xd3\x00\xff", b"\xb5\x62\x01\x07\x00\x07"])
def test_a_fake_binary_header_does_not_hold_back_the_nmea_after_it(nmea, fake):
    # random noise can look like an RTCM/UBX header announcing a long frame; the decoder
    # must not wait for that many bytes while valid sentences are already there
    data = b"".join(epoch(nmea, s) for s in range(3))
    clean = NmeaDecoder().feed(data)
    dec = NmeaDecoder()
    assert dec.feed(b"\x00" + fake + data) == clean and len(clean) == 3
    assert dec.counts["noise_bytes"] == 1 + len(fake)


def corrupt(line: bytes) -> bytes:
    """The same sentence with one bit flipped in its body: its checksum no longer matches."""
    return line[:8] + bytes([line[8] ^ 0x01]) + line[9:]


def void_epoch(nmea) -> tuple[bytes, bytes, bytes]:
    """10:15:03: RMC and GLL say void, GGA still carries a position (a receiver holding its
    last fix)."""
    return (nmea("GNRMC,101503.00,V,4807.0000,N,01131.0000,E,5.0,45.0,010626,,,A"),
            nmea("GNGGA,101503.00,4807.0000,N,01131.0000,E,1,09,0.8,500.0,M,47.0,M,,"),
            nmea("GNGLL,4807.0000,N,01131.0000,E,101503.00,V,A"))


def test_no_position_from_what_a_corrupted_sentence_leaves_behind(nmea):
    # with RMC and GLL corrupted on the line, what is left of the void epoch would look like a
    # good fix: the epoch lost sentences, so it gives none
    steady = b"".join(epoch(nmea, s) for s in range(3))
    rmc, gga, gll = void_epoch(nmea)
    expected = [ms(2026, 6, 1, 10, 15, s) for s in (0, 1, 2, 4)]
    whole, _ = decode(steady + rmc + gga + gll + epoch(nmea, 4))
    assert [p.ts_ms for p in whole] == expected
    fixes, dec = decode(steady + corrupt(rmc) + gga + corrupt(gll) + epoch(nmea, 4))
    assert [p.ts_ms for p in fixes] == expected
    assert dec.counts["bad_checksum"] == 2 and dec.counts["incomplete_epoch"] == 1


def test_a_cut_line_also_spoils_its_epoch(nmea):
    # RMC cut short (the next '$' comes before its end of line)
    steady = b"".join(epoch(nmea, s) for s in range(3))
    rmc, gga, gll = void_epoch(nmea)
    fixes, dec = decode(steady + rmc[:30] + gga + corrupt(gll) + epoch(nmea, 4))
    assert [p.ts_ms for p in fixes] == [ms(2026, 6, 1, 10, 15, s) for s in (0, 1, 2, 4)]
    assert dec.counts["truncated"] == 1 and dec.counts["incomplete_epoch"] == 1
