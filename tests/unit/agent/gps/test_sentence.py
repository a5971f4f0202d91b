"""Property tests: hostile bytes never raise, bad checksums never make fixes."""

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.gps import NmeaDecoder
from agent.gps.framing import LOST, LineAssembler
from agent.gps.sentence import nmea_checksum

CORPUS = Path(__file__).parents[3] / "data" / "nmea"
UBLOX = (CORPUS / "ublox_m8_gn.nmea").read_bytes()
SENTENCES = [line + b"\n" for line in UBLOX.split(b"\n") if line.startswith(b"$")]
PRINTABLE = [b for b in range(0x20, 0x7F) if b != ord("$")]
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def decode(data: bytes, chunk: int = 4096):
    dec = NmeaDecoder()
    out = []
    for i in range(0, len(data), chunk):
        out += dec.feed(data[i : i + chunk])
    return out + dec.flush(), dec


def plausible(fixes) -> bool:
    times = [p.ts_ms for p in fixes]
    return (times == sorted(set(times))
            and all(-90 <= p.lat <= 90 and -180 <= p.lon <= 180 for p in fixes)
            and not any(p.lat == 0 and p.lon == 0 for p in fixes))


@FAST
@given(st.binary(max_size=3000), st.integers(1, 300))
def test_random_bytes_never_raise_and_never_fix(data, chunk):
    fixes, dec = decode(data, chunk)
    assert fixes == []
    assert all(v >= 0 for v in dec.counts.values())


@FAST
@given(st.lists(st.sampled_from([b"$", b"\r\n", b"*", b",", b"GNGGA", b"GPRMC", b"\xb5\x62",
                                 b"\xd3\x00", b"123519.00", b"4807.038", b"A", b"0"]),
                max_size=300))
def test_nmea_shaped_noise_never_raises(tokens):
    fixes, _ = decode(b"".join(tokens))
    assert plausible(fixes)


@FAST
@given(st.data())
def test_a_sentence_with_a_broken_checksum_only_ever_removes_fixes(data):
    """Change one byte of one sentence (body or checksum digits): every position that still
    comes out is one the intact input gives too, at the same time (no position from what the
    broken sentence leaves behind), and at most the epochs it may belong to (two) are lost.
    (Other fields of later epochs may differ: the gap changes which sentence the decoder
    learns as the end of the receiver's cycle.)"""
    i = data.draw(st.integers(0, len(SENTENCES) - 1))
    line = SENTENCES[i]
    pos = data.draw(st.integers(1, len(line) - 2 - (line.endswith(b"\r\n"))))
    # a lower-case hex digit for an upper-case one is the same checksum, not a corruption
    same = {line[pos], ord(chr(line[pos]).lower())} if line.index(b"*") < pos else {line[pos]}
    new = data.draw(st.sampled_from([b for b in PRINTABLE if b not in same]))
    mutated = line[:pos] + bytes([new]) + line[pos + 1 :]
    body, star, check = mutated.rstrip(b"\r\n").rpartition(b"*")
    if star and len(check) == 2 and check.isalnum():
        try:
            still_valid = nmea_checksum(body[1:]) == int(check, 16)
        except ValueError:
            still_valid = False
        assert not still_valid  # one changed byte always breaks an XOR checksum
    with_bad, _ = decode(b"".join(SENTENCES[:i] + [mutated] + SENTENCES[i + 1 :]))
    intact, _ = decode(b"".join(SENTENCES))
    where = {(p.ts_ms, p.lat, p.lon) for p in intact}
    assert all((p.ts_ms, p.lat, p.lon) in where for p in with_bad)
    assert len(intact) - len(with_bad) <= 2


@FAST
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_random_mutations_of_a_capture_never_raise(seed, n):
    rng = random.Random(seed)
    data = bytearray((CORPUS / "noisy_mix.nmea").read_bytes())
    for _ in range(n):
        at = rng.randrange(len(data))
        op = rng.randrange(3)
        if op == 0:
            data[at] = rng.randrange(256)
        elif op == 1:
            del data[at : at + rng.randrange(1, 50)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 50)))
    fixes, _ = decode(bytes(data), rng.choice((1, 17, 4096)))
    assert plausible(fixes)


@given(st.binary(max_size=200))
def test_checksum_folding_equals_plain_xor(body):
    x = 0
    for b in body:
        x ^= b
    assert nmea_checksum(body) == x


@FAST
@given(st.binary(max_size=2000))
def test_line_assembler_only_yields_printable_dollar_lines(data):
    for line in LineAssembler().feed(data + b"\n"):
        if line == LOST:  # a cut or over-long line was here
            continue
        assert line.startswith(b"$") and all(0x20 <= b < 0x7F for b in line)
        assert b"$" not in line[1:]
