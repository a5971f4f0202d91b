"""`fleet-agent nmea-decode [FILE|-]`: raw NMEA bytes in, one JSON object per fix out.

By default it prints what the agent would journal with decimation off (the decoder and the
plausibility filter); `--raw` prints what the decoder alone sees, without the filter. Exit
status is 0 for any input (garbage included), 1 for an I/O error, 2 for a bad option.
Counters go to stderr as one JSON object. Decimation only with `--decimate`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from ..readings import Position
from .decimate import Decimator
from .nmea import NmeaDecoder

# Read size: large enough to amortise call overhead, small enough to stream from a pipe.
CHUNK = 65536


def fix_json(pos: Position) -> dict:
    """The command's output object for one fix."""
    when = dt.datetime.fromtimestamp(pos.ts_ms / 1000, dt.UTC)
    return {
        "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{pos.ts_ms % 1000:03d}Z",
        "lat": pos.lat, "lon": pos.lon, "alt_m": pos.alt_m, "speed_kmh": pos.speed_kmh,
        "course_deg": pos.course_deg, "fix": pos.fix, "mode": pos.mode, "sats": pos.sats,
        "hdop": pos.hdop,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="fleet-agent nmea-decode",
        description="Decode raw NMEA 0183 bytes (any garbage) into one JSON fix per line.")
    parser.add_argument("file", nargs="?", default="-", help="capture file, or - for stdin")
    parser.add_argument("--allow-missing-checksum", action="store_true",
                        help="accept sentences without *hh (default: reject them)")
    parser.add_argument("--decimate", action="store_true",
                        help="apply the agent's default decimation rules")
    parser.add_argument("--raw", action="store_true",
                        help="the decoder alone: no plausibility filter (time order, jumps)")
    parser.add_argument("--pivot", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                        help="week-rollover pivot (default: the build date); for replaying "
                             "captures recorded long ago")
    args = parser.parse_args(argv)
    decoder = NmeaDecoder(require_checksum=not args.allow_missing_checksum,
                          plausibility=not args.raw, pivot=args.pivot)
    decimator = Decimator() if args.decimate else None
    out = sys.stdout
    try:
        src = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"nmea-decode: {exc}", file=sys.stderr)
        return 1
    try:
        with src:
            while chunk := src.read(CHUNK):
                _write(decoder.feed(chunk), decimator, decoder, out)
            _write(decoder.flush(), decimator, decoder, out)
    except OSError as exc:
        print(f"nmea-decode: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dict(sorted(decoder.counts.items()))), file=sys.stderr)
    return 0


def _write(fixes: list[Position], decimator: Decimator | None, decoder: NmeaDecoder,
           out) -> None:
    for pos in fixes:
        if decimator is not None and not decimator.offer(pos):
            decoder.counts["decimated"] += 1
            continue
        out.write(json.dumps(fix_json(pos)) + "\n")
