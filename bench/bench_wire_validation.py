"""What the strict wire checks cost per reading at the gateway (issue 22).

    .venv/bin/python bench/bench_wire_validation.py [--rounds 7]

For a batch of 1 and of 1,000 readings (positions with every quantity, and CAN readings of 8
signals), the time per reading of:
- baseline: cbor2's plain decoder and the codec's message checks (envelope of each reading,
  duplicate sequence numbers), i.e. what the gateway decoded before the strict decoder; the
  gateway also ran a lighter content check then (lat/lon, finite floats), not counted here,
  so the ratio overstates what the change added;
- strict: `geostream.codec.decode_payload` (the strict CBOR subset, geostream/strict_cbor.py,
  and the envelope check) plus `geostream.schema.content_problem` with the gateway's clock
  and time window (every field of every kind type-checked).
Interleaved rounds, best of each, so a busy machine slows both alike; the ratio is the figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cbor2  # noqa: E402

from geostream.codec import _decode_map, decode_payload  # noqa: E402
from geostream.schema import content_problem  # noqa: E402

NOW = 1_765_000_000_000


def position(q: int) -> dict:
    return {"q": q, "ts": NOW - 1000 * q, "k": "pos", "lat": 52.0 + q * 1e-6, "lon": 4.0,
            "alt": 3.5, "spd": 50.2, "crs": 90.1, "fix": 1, "mode": 3, "sat": 11,
            "hdop": 0.8, "clk": -12}


def signals(q: int) -> dict:
    return {"q": q, "ts": NOW - 1000 * q, "k": "can", "bus": "j1939",
            "sig": {f"Signal{i}": 100.5 + i for i in range(7)} | {"Gear": "D"}}


def payload(make, n: int) -> bytes:
    return cbor2.dumps({"t": "batch", "epoch": 7, "readings": [make(q) for q in range(1, n + 1)]})


def baseline(data: bytes) -> None:
    _decode_map(cbor2.loads(data))


def strict(data: bytes) -> None:
    batch = decode_payload(data)
    for r in batch.readings:
        content_problem(r, NOW)


def per_reading_us(fn, data: bytes, n: int, budget_s: float = 0.3) -> float:
    loops, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < budget_s:
        fn(data)
        loops += 1
    return elapsed / loops / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    print(f"{'readings':<26}{'baseline µs/reading':>22}{'strict µs/reading':>20}{'ratio':>8}")
    for name, make in (("positions", position), ("CAN, 8 signals", signals)):
        for n in (1, 1000):
            data = payload(make, n)
            base, new = [], []
            for _ in range(args.rounds):
                base.append(per_reading_us(baseline, data, n))
                new.append(per_reading_us(strict, data, n))
            b, s = min(base), min(new)
            print(f"{name + f' × {n}':<26}{b:>22.2f}{s:>20.2f}{s / b:>7.2f}×")


if __name__ == "__main__":
    main()
