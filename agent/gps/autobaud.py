"""Sans-IO baud-rate detection: given sample bytes read at each candidate rate, pick the
rate at which the receiver's output decodes into checksummed sentences. Reading the samples
(switching the port's rate) is the serial source's job."""

from __future__ import annotations

from .framing import LineAssembler
from .sentence import Reject, check_line

# Common NMEA receiver rates, most likely first (u-blox/Quectel default 9600, SiRF 4800).
BAUD_RATES = (9600, 4800, 38400, 115200)
# Two good sentences make a rate certain; one could be a fluke of misframed noise.
MIN_GOOD_SENTENCES = 2


def score(sample: bytes) -> int:
    """How many lines in `sample` carry a correct checksum."""
    good = 0
    for line in LineAssembler().feed(sample):
        try:
            check_line(line, require_checksum=True)
        except Reject:
            continue
        good += 1
    return good


def choose_baud(samples: dict[int, bytes]) -> int | None:
    """The rate with the most good sentences (first listed on a tie), or None if no rate
    reaches MIN_GOOD_SENTENCES."""
    best, best_score = None, MIN_GOOD_SENTENCES - 1
    for rate, sample in samples.items():
        s = score(sample)
        if s > best_score:
            best, best_score = rate, s
    return best
