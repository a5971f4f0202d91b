"""Sentences per second through NmeaDecoder versus pynmea2.parse alone, on the same input.

Run: python bench/bench_nmea.py  (about 10 s; prints a table). Inputs are the test corpus
(tests/data/nmea/*.nmea, six receiver styles with binary noise) repeated, the same with
only the sentences the decoder uses (no GSV/TXT/proprietary), and the 20 real receiver
captures of tests/data/gpsd. pynmea2 gets the lines already
split and decoded (its best case); NmeaDecoder gets raw bytes in 4 KiB reads and does framing,
checksums, field validation, epoch assembly and plausibility checks on top.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pynmea2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.gps import NmeaDecoder  # noqa: E402

TARGET_SENTENCES = 30_000  # per input: enough for stable rates, short enough to stay < 30 s
REPEATS = 3  # best of N, to dampen noise from other processes on a shared machine
CHUNK = 4096
USED = (b"GGA,", b"RMC,", b"GNS,", b"VTG,", b"GSA,", b"GLL,", b"ZDA,")


def corpus() -> bytes:
    return b"".join(p.read_bytes() for p in sorted((ROOT / "tests/data/nmea").glob("*.nmea")))


def real_captures() -> bytes:
    """The 20 real receiver captures of tests/data/gpsd (gpsd's regression logs)."""
    return b"".join(p.read_bytes() for p in sorted((ROOT / "tests/data/gpsd").glob("*.log")))


def used_only(data: bytes) -> bytes:
    keep = [line for line in data.split(b"\n")
            if line.startswith(b"$") and line[3:7] in USED]
    return b"\n".join(keep) + b"\n"


def scale(data: bytes) -> tuple[bytes, int]:
    n = sum(1 for line in data.split(b"\n") if line.startswith(b"$"))
    reps = max(1, TARGET_SENTENCES // n)
    return data * reps, n * reps


def run_pynmea2(data: bytes) -> float:
    lines = [line for line in data.decode("ascii", "replace").splitlines()
             if line.startswith("$")]
    t0 = time.perf_counter()
    for line in lines:
        try:
            pynmea2.parse(line, check=True)
        except pynmea2.ParseError:
            pass
    return time.perf_counter() - t0


def run_decoder(data: bytes) -> float:
    dec = NmeaDecoder()
    t0 = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        dec.feed(data[i : i + CHUNK])
    dec.flush()
    return time.perf_counter() - t0


def main() -> int:
    raw = corpus()
    rows = []
    for label, sample in (("corpus mix", raw), ("used types only", used_only(raw)),
                          ("gpsd captures", real_captures())):
        data, sentences = scale(sample)
        t_ref = min(run_pynmea2(data) for _ in range(REPEATS))
        t_dec = min(run_decoder(data) for _ in range(REPEATS))
        rows.append((label, sentences, sentences / t_ref, sentences / t_dec, t_ref / t_dec))
    print(f"{'input':<16} {'sentences':>9} {'pynmea2/s':>11} {'decoder/s':>11} {'ratio':>6}")
    for label, n, ref, dec, ratio in rows:
        print(f"{label:<16} {n:>9} {ref:>11,.0f} {dec:>11,.0f} {ratio:>6.2f}")
    print("ratio = decoder rate / pynmea2 rate (>1: the full decoder is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
