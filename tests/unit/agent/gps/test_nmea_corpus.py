"""The corpus in tests/data/nmea: every receiver style decodes to exactly the expected fixes."""

import json
import random
from pathlib import Path

import pytest

from agent.gps import NmeaDecoder
from agent.gps.cli import fix_json, main

CORPUS = Path(__file__).parents[3] / "data" / "nmea"

STYLES = sorted(p.stem for p in CORPUS.glob("*.nmea"))


def expected(name):
    return [json.loads(line) for line in (CORPUS / f"{name}.expected.jsonl").open()]


def same_fix(got: dict, want: dict) -> bool:
    for key, value in want.items():
        if isinstance(value, float):
            if got[key] is None or abs(got[key] - value) > 1e-6:
                return False
        elif got[key] != value:
            return False
    return True


def test_corpus_has_several_styles():
    assert len(STYLES) >= 6


@pytest.mark.parametrize("name", STYLES)
def test_nmea_decode_command_prints_expected_fixes(name, capsys):
    assert main([str(CORPUS / f"{name}.nmea")]) == 0
    out, err = capsys.readouterr()
    got = [json.loads(line) for line in out.splitlines()]
    want = expected(name)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert same_fix(g, w), (g, w)
    counts = json.loads(err.strip().splitlines()[-1])
    assert counts["fixes"] == len(want)


@pytest.mark.parametrize("name", STYLES)
def test_chunking_does_not_change_the_result(name):
    data = (CORPUS / f"{name}.nmea").read_bytes()
    whole = NmeaDecoder()
    ref = whole.feed(data) + whole.flush()
    rng = random.Random(name)
    for _ in range(3):
        dec, got, i = NmeaDecoder(), [], 0
        while i < len(data):
            n = rng.choice((1, 2, 7, 64, 500))
            got += dec.feed(data[i : i + n])
            i += n
        got += dec.flush()
        assert got == ref
        assert dec.counts == whole.counts


def test_noisy_capture_counts_every_kind_of_damage():
    dec = NmeaDecoder()
    dec.feed((CORPUS / "noisy_mix.nmea").read_bytes())
    dec.flush()
    for kind in ("bad_checksum", "no_checksum", "truncated", "overlong", "bad_field", "no_fix",
                 "time_backwards", "jump", "noise_bytes"):
        assert dec.counts[kind] >= 1, kind
    assert dec.counts["time_backwards"] == 2 and dec.counts["jump"] == 1


def test_binary_frames_are_recognised_and_skipped_whole():
    dec = NmeaDecoder()
    fixes = dec.feed((CORPUS / "ublox_m8_gn.nmea").read_bytes()) + dec.flush()
    assert len(fixes) == 25
    assert dec.counts["ubx_frames"] == 9 and dec.counts["rtcm_frames"] == 6
    assert dec.counts["noise_bytes"] == 0


def test_no_position_at_null_island_from_void_epochs():
    for name in ("quectel_lc", "sirf_gp"):
        dec = NmeaDecoder()
        fixes = dec.feed((CORPUS / f"{name}.nmea").read_bytes()) + dec.flush()
        assert dec.counts["no_fix"] >= 3
        assert all(abs(f.lat) > 1 and abs(f.lon) > 1 for f in fixes)
        # the stale 4807.038 position repeated with status V never appears
        assert all(fix_json(f)["time"] >= expected(name)[0]["time"] for f in fixes)
