"""Baud detection decided on sample bytes, the way they look at right and wrong rates."""

import random

from agent.gps.autobaud import BAUD_RATES, choose_baud, score


def garbled(sample: bytes, seed: int) -> bytes:
    """What a UART at the wrong rate delivers: shorter runs of unrelated bytes."""
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(len(sample) // 3))


def test_picks_the_rate_whose_sample_decodes(nmea):
    good = b"".join(nmea(f"GPGGA,1015{s:02d}.00,4807.0,N,01131.0,E,1,08,0.9,1.0,M,,M,,")
                    for s in range(5))
    samples = {rate: garbled(good, rate) for rate in BAUD_RATES}
    samples[38400] = good
    assert choose_baud(samples) == 38400
    assert score(good) == 5


def test_noise_only_or_one_lucky_sentence_is_not_enough(nmea):
    one = nmea("GPGSV,1,1,01,05,40,083,46")
    samples = {rate: garbled(b"x" * 3000, rate) for rate in BAUD_RATES}
    assert choose_baud(samples) is None
    samples[4800] = b"\xff\x00" + one
    assert choose_baud(samples) is None
    samples[4800] += one
    assert choose_baud(samples) == 4800


def test_bad_checksums_do_not_count(nmea):
    corrupt = b"".join(nmea("GPGSV,1,1,01,05,40,083,46").replace(b"46*", b"47*")
                       for _ in range(5))
    assert score(corrupt) == 0
    assert choose_baud({9600: corrupt}) is None
