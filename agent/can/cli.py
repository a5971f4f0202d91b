"""`fleet-agent can-decode --dbc FILE [--dbc FILE…] [LOG|-]`: candump log → JSON lines."""

from __future__ import annotations

import argparse
import json
import sys

from .dbcload import DbcError, load_dbc
from .decoder import CanDecoder
from .logs import CandumpReader


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="fleet-agent can-decode",
        description="Decode a candump -L log with DBC files: one JSON object per decoded frame "
        "(time, bus, frame_id, message, signals); counts on stderr.",
    )
    parser.add_argument("--dbc", action="append", required=True, metavar="FILE",
                        help="DBC file (repeat for several; the first defining an id wins)")
    parser.add_argument("log", nargs="?", default="-", metavar="LOG",
                        help="candump log file, or - for standard input (default)")
    args = parser.parse_args(argv)
    databases = []
    for path in args.dbc:
        try:
            databases.append(load_dbc(path))
        except DbcError as exc:
            print(f"can-decode: cannot load DBC {exc}", file=sys.stderr)
            return 2
    decoder = CanDecoder(databases)
    try:
        stream = sys.stdin if args.log == "-" else open(args.log, encoding="utf-8",
                                                        errors="replace")
    except OSError as exc:
        print(f"can-decode: {args.log}: {exc.strerror}", file=sys.stderr)
        return 2
    reader = CandumpReader(stream)
    out = sys.stdout
    try:
        for msg in reader:
            decoded = decoder.feed(msg, round(msg.timestamp * 1000))
            if decoded is None:
                continue
            out.write(json.dumps({
                "time": msg.timestamp, "bus": msg.channel, "frame_id": decoded.frame_id,
                "message": decoded.message, "signals": decoded.values,
            }) + "\n")
    except BrokenPipeError:
        return 0
    finally:
        if stream is not sys.stdin:
            stream.close()
    c = decoder.counts
    print(
        f"can-decode: {c['frames']} frames, {c['decoded']} decoded, {c['unknown_id']} unknown id, "
        f"{c['bad_dlc']} bad length, {c['decode_errors']} undecodable, "
        f"{c['out_of_range']} values out of range, {c['error_frames']} error frames, "
        f"{c['remote_frames']} remote frames, {reader.bad_lines} bad lines",
        file=sys.stderr,
    )
    return 0
