"""Real receiver captures (gpsd's regression logs) against gpsd 3.22's own TPV reports."""

import datetime as dt
import random
import re

import pytest

from agent.gps import NmeaDecoder
from agent.gps.rollover import BUILD_DATE, GPS_ROLLOVER
from tests.unit.agent.gps.gpsd_reference import CAPTURES, DATA, GPSD_PIVOT, compare

# Every difference in docs/gps.md's table, by capture: (fixes only we report, fixes only gpsd
# reports). A new difference fails the test until it is understood and listed there.
# One NMEA sentence up to its checksum, wherever it is (also glued to binary frames).
SENTENCE = re.compile(rb"\$[^$*\r\n]{2,}\*")
EXPLAINED = {
    "bt451": (2, 4),  # capture jumps back and forth in time: plausibility filter
    # Garmin GLL stamped one second after its epoch; and a sentence failing its checksum
    # spoils the epochs it may belong to (see INCOMPLETE)
    "garmin48": (1, 2),
    "gp-320fw-2019-04-06-overflow": (1, 0),  # epoch without its cycle-ending GLL
    "gp-320fw-2019-04-07-coldboot": (0, 2),  # both epochs gpsd reports lost sentences
    "quectel": (0, 1),  # an epoch with a cut line
    "telit-he910": (0, 1),  # time steps back 0.3 s: plausibility filter
    "ublox-lea-5h": (1, 0),  # capture cut after a lone RMC
}
# gpsd's fixes from epochs that lost a sentence (bad checksum, cut line), which we refuse on
# purpose: what the lost sentence said (void, quality 0) could have refused them
INCOMPLETE = {"garmin48": 2, "gp-320fw-2019-04-07-coldboot": 2, "quectel": 1}


def test_a_varied_set_of_real_receivers():
    assert len(CAPTURES) >= 15
    text = " ".join((DATA / f"{n}.log").read_bytes()[:400].decode("utf-8", "replace").lower()
                    for n in CAPTURES)
    for maker in ("u-blox", "sirf", "mt3339", "garmin", "hemisphere", "quectel"):
        assert maker in text, maker


@pytest.mark.parametrize("name", CAPTURES)
def test_fixes_match_gpsd(name):
    r = compare(name)
    assert r.expected > 0
    assert (len(r.extra), len(r.missed)) == EXPLAINED.get(name, (0, 0)), (r.extra, r.missed)
    assert r.counts.get("incomplete_epoch", 0) >= INCOMPLETE.get(name, 0)


def test_recall_and_precision_at_least_99_percent():
    results = [compare(n) for n in CAPTURES]
    hit = sum(r.matched for r in results)
    assert hit / (sum(r.expected for r in results) - sum(INCOMPLETE.values())) >= 0.99
    assert hit / sum(r.reported for r in results) >= 0.99


def test_plausibility_filter_is_the_only_cause_in_telit():
    r = compare("telit-he910", NmeaDecoder(pivot=GPSD_PIVOT, plausibility=False))
    assert r.matched == r.expected == r.reported


def test_week_rollover_dates_are_corrected_not_dropped():
    # gpslim236 was recorded in 2006: against today's build date every one of its dates
    # is a rollover victim, and every fix is kept 1024 weeks later.
    dec = NmeaDecoder()
    fixes = dec.feed((DATA / "gpslim236.log").read_bytes()) + dec.flush()
    assert len(fixes) == 20 and dec.counts["rollover_corrected"] >= 20
    first = dt.datetime.fromtimestamp(fixes[0].ts_ms / 1000, dt.UTC).date()
    assert abs(first - BUILD_DATE) <= GPS_ROLLOVER / 2  # nearest the build date
    assert (first - dt.date(2006, 7, 21)) % GPS_ROLLOVER == dt.timedelta(0)


@pytest.mark.parametrize("name", CAPTURES)
def test_no_fix_from_corrupted_sentences(name):
    """Flip one character inside every sentence: the checksum rejects all of them."""
    rng = random.Random(name)

    def flip(m: re.Match) -> bytes:
        body = bytearray(m[0])
        i = rng.randrange(1, len(body) - 1)
        body[i] ^= 0x01
        return bytes(body)

    data, n = SENTENCE.subn(flip, (DATA / f"{name}.log").read_bytes())
    assert n > 0
    dec = NmeaDecoder(pivot=GPSD_PIVOT)
    assert dec.feed(data) + dec.flush() == []
