"""What the session's DEFLATE stream (docs/protocol.md §3.1) buys on the wire, and what it
costs the gateway in memory, for the load tester's readings at 1 Hz (one reading per batch).

    .venv/bin/python bench/bench_deflate_wire.py [--readings 600] [--sessions 200]

Wire: the framed batch bytes per reading with and without the DEFLATE stream, for live
batches of one reading and for backlog batches of 100 (an outage's drain). Memory: the Python
heap one gateway-side `Inflater` holds after a batch (tracemalloc, over `--sessions` of them).
QUIC and UDP headers (~50 bytes per datagram) come on top of both wire figures.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geostream.codec import encode  # noqa: E402
from geostream.deflate import Deflater, Inflater  # noqa: E402
from geostream.limits import MAX_MESSAGE_BYTES  # noqa: E402
from geostream.messages import Batch  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402


def wire_bytes(readings: list[dict], per_batch: int, compress: bool) -> float:
    deflater = Deflater() if compress else None
    total = 0
    for i in range(0, len(readings), per_batch):
        total += len(encode(Batch(epoch=1, readings=tuple(readings[i:i + per_batch])), deflater))
    return total / len(readings)


def inflater_bytes(sessions: int, piece: bytes) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = []
    for _ in range(sessions):
        z = Inflater(MAX_MESSAGE_BYTES)
        z.piece(piece)
        held.append(z)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / sessions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=600)
    ap.add_argument("--sessions", type=int, default=200)
    a = ap.parse_args()
    sim = SimVehicle("lt-000001", "", 1, 1.0, 0.0, 1_790_000_000_000, seed=1)
    readings = [sim.wire_reading(q) for q in range(1, a.readings + 1)]
    piece = Deflater().piece(b"\xa0" * 200)
    print(f"{a.readings} readings of the load tester's mix (3 positions : 1 CAN snapshot)")
    for per_batch, what in ((1, "live, 1 reading per batch"), (100, "backlog, 100 per batch")):
        plain, z = wire_bytes(readings, per_batch, False), wire_bytes(readings, per_batch, True)
        print(f"  {what:<28} plain {plain:6.1f} B/reading   DEFLATE {z:6.1f} B/reading   "
              f"saves {plain - z:6.1f} B ({(1 - z / plain) * 100:.0f} %)")
    print(f"  gateway memory per session's Inflater: {inflater_bytes(a.sessions, piece) / 1024:.1f}"
          " KB (Python heap, tracemalloc)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
