"""`fleet-agent can-decode --dbc FILE [--dbc FILE…] [LOG|-]`: CAN log → JSON lines.

Logs: candump -L text (also on stdin), ASC, BLF and TRC (python-can's LogReader), chosen by
suffix. Exit status 2 for a DBC cantools cannot parse or an unreadable log, naming the file.
"""

from __future__ import annotations

import argparse
import json
import sys

from .dbcload import DbcError, load_dbc_checked
from .decoder import CanDecoder
from .logs import CandumpReader, LogFile


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="fleet-agent can-decode",
        description="Decode a CAN log (candump -L, .asc, .blf, .trc) with DBC files: one JSON "
        "object per decoded frame (time, bus, frame_id, message, signals); counts on stderr.",
    )
    parser.add_argument("--dbc", action="append", required=True, metavar="FILE",
                        help="DBC file (repeat for several; the first defining an id wins)")
    parser.add_argument("log", nargs="?", default="-", metavar="LOG",
                        help="log file (.asc/.blf/.trc, else candump -L text), or - for "
                             "candump text on standard input (default)")
    parser.add_argument("--range-check", choices=("keep", "drop"), default="keep",
                        help="values outside the DBC [min|max]: keep (default) or drop")
    args = parser.parse_args(argv)
    databases, warnings = [], 0
    for path in args.dbc:
        try:
            db, found = load_dbc_checked(path)
        except DbcError as exc:
            print(f"can-decode: cannot load DBC {exc}", file=sys.stderr)
            return 2
        for warning in found:
            print(f"can-decode: warning: DBC {warning}", file=sys.stderr)
        databases.append(db)
        warnings += len(found)
    decoder = CanDecoder(databases, range_check=args.range_check)
    decoder.counts["dbc_warnings"] = warnings
    if args.log == "-":
        reader = CandumpReader(sys.stdin)
    else:
        try:
            open(args.log, "rb").close()
        except OSError as exc:
            print(f"can-decode: {args.log}: {exc.strerror}", file=sys.stderr)
            return 2
        reader = LogFile(args.log)
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
    except OSError as exc:  # a binary log python-can cannot read
        print(f"can-decode: {exc}", file=sys.stderr)
        return 2
    c = decoder.counts
    print(
        f"can-decode: {c['frames']} frames, {c['decoded']} decoded, {c['unknown_id']} unknown id, "
        f"{c['bad_dlc']} bad length, {c['decode_errors']} undecodable, "
        f"{c['out_of_dbc_range']} values outside their DBC range, "
        f"{c['j1939_error']} J1939 error codes, {c['j1939_not_available']} J1939 not available, "
        f"{c['error_frames']} error frames, "
        f"{c['remote_frames']} remote frames, {reader.bad_lines} bad lines, "
        f"{c['dbc_warnings']} DBC warnings",
        file=sys.stderr,
    )
    return 0
