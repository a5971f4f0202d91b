"""What the session's DEFLATE stream (docs/protocol.md §3.1) buys on the wire, and what it
costs the gateway in memory, for the load tester's readings at 1 Hz (one reading per batch).

    .venv/bin/python bench/bench_deflate_wire.py [--readings 600] [--sessions 200]

Wire: the framed batch bytes per reading with and without the DEFLATE stream, for live
batches of one reading and for backlog batches of 100 (an outage's drain). Memory: the Python
heap one gateway-side `Inflater` holds after a batch (tracemalloc, over `--sessions` of them).
QUIC and UDP headers (~50 bytes per datagram) come on top of both wire figures.

`--options` adds what other shapes of compression would give (not on the wire today; the
figures for choosing): the session stream with a smaller window (`wbits` 9–10), and each batch
compressed on its own against a preset dictionary shared by every session (the readings of
another simulated vehicle), which leaves the gateway no state between batches. For each:
bytes per reading, inflater memory held per session between batches, and gateway CPU per
inflated batch.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geostream.codec import encode  # noqa: E402
from geostream.deflate import (  # noqa: E402
    LEVEL,
    SYNC_TAIL,
    Deflater,
    DictionaryDeflater,
    Inflater,
    inflate_alone,
)
from geostream.limits import MAX_MESSAGE_BYTES  # noqa: E402
from geostream.messages import Batch  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402


def wire_bytes(readings: list[dict], per_batch: int, compress) -> float:
    """Framed bytes per reading; `compress`: True (the session's Deflater), False, or an
    object with `piece(data)` (another shape, `--options`)."""
    deflater = Deflater() if compress is True else (compress or None)
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


class SessionStream:
    """A session-wide raw DEFLATE stream with window `wbits` (§3.1's shape at 12)."""

    KEY = "z"

    def __init__(self, wbits: int, mem_level: int = 8):
        self.wbits = wbits
        self._z = zlib.compressobj(LEVEL, zlib.DEFLATED, -wbits, mem_level)

    def piece(self, data: bytes) -> bytes:
        return (self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH))[:-len(SYNC_TAIL)]

    def inflater(self):
        return zlib.decompressobj(-self.wbits)


class PresetDictionary:
    """Each batch on its own, against a dictionary every session shares: no state between
    batches on either side."""

    KEY = "zd"

    def __init__(self, wbits: int, zdict: bytes):
        self.wbits, self.zdict = wbits, zdict[-(1 << wbits):]

    def piece(self, data: bytes) -> bytes:
        z = zlib.compressobj(LEVEL, zlib.DEFLATED, -self.wbits, zdict=self.zdict)
        return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-len(SYNC_TAIL)]

    def inflater(self):
        return None  # made per batch

    def inflate(self, piece: bytes) -> bytes:
        return zlib.decompressobj(-self.wbits, zdict=self.zdict).decompress(piece + SYNC_TAIL)


class Shipped(DictionaryDeflater):
    """What a revision-5 agent and gateway do (docs/protocol.md §3.2): dictionary 1."""

    def __init__(self):
        super().__init__(1)

    def inflate(self, piece: bytes) -> bytes:
        return inflate_alone(piece, 1, MAX_MESSAGE_BYTES)


def option_figures(readings: list[dict], zdict: bytes, sessions: int) -> list[str]:
    """Bytes per reading (live, drained), memory held per session, CPU per inflated batch."""
    lines = []
    shapes = [("session stream, wbits 12 (§3.1)", lambda: SessionStream(12)),
              ("session stream, wbits 10", lambda: SessionStream(10)),
              ("session stream, wbits 9", lambda: SessionStream(9)),
              ("per batch, preset dictionary, wbits 12", lambda: PresetDictionary(12, zdict)),
              ("per batch, preset dictionary, wbits 10", lambda: PresetDictionary(10, zdict)),
              ("shipped dictionary 1 (§3.2, revision 5)", Shipped)]
    plain = wire_bytes(readings, 1, False)
    for name, make in shapes:
        live, drained = (wire_bytes(readings, n, make()) for n in (1, 100))
        shape = make()
        pieces = [shape.piece(encode_readings(readings[i:i + 1])) for i in range(len(readings))]
        if isinstance(shape, PresetDictionary | Shipped):
            held = 0.0
            t0 = time.process_time()
            for p in pieces:
                shape.inflate(p)
        else:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            kept = []
            for _ in range(sessions):
                z = shape.inflater()
                z.decompress(pieces[0] + SYNC_TAIL)
                kept.append(z)
            held = (tracemalloc.get_traced_memory()[0] - base) / sessions
            tracemalloc.stop()
            z = shape.inflater()
            t0 = time.process_time()
            for p in pieces:
                z.decompress(p + SYNC_TAIL)
        cpu = (time.process_time() - t0) / len(pieces) * 1e6
        lines.append(f"  {name:<40} live {live:6.1f} B ({live / plain:.2f}× plain)  drained "
                     f"{drained:6.1f} B  held per session {held / 1024:5.1f} KB  "
                     f"inflate {cpu:5.1f} µs per batch")
    return lines


# the signal names of the DBC files the agent ships (agent/dbc/), most common first
SHIPPED_SIGNALS = (
    ("can0", ("EngSpeed", "WheelBasedVehicleSpeed", "EngCoolantTemp", "FuelLevel1", "EngFuelRate",
              "ActualEngPercentTorque", "HighResTotalVehicleDistance", "AmbientAirTemp",
              "BatteryPotential_PowerInput1", "EngOilTemp1")),
    ("obd", ("OBD_EngineRPM", "OBD_VehicleSpeed", "OBD_CoolantTemp", "OBD_FuelLevel",
             "OBD_ThrottlePos", "OBD_IntakeAirTemp")),
)


def dictionary_sample() -> bytes:
    """The bytes preset dictionary 1 was made of (geostream/zdict.py; docs/protocol.md §3.2):
    readings of every kind as CBOR, the rarest first, so that the most frequent (positions)
    sit nearest the data, within the 4 KiB window. Positions and the CAN snapshot come from
    a simulated vehicle other than the ones the load tester runs (seed 99); the signal names
    of the shipped DBC files and the keys of events and driver actions are added."""
    import cbor2

    from geostream.deflate import DICTIONARY_BYTES

    sim = SimVehicle("lt-009999", "", 1, 1.0, 0.0, 1_780_000_000_000, seed=99)
    rare = [{"ts": 1_780_000_000_000, "k": "evt", "name": "journal-dropped",
             "data": {"reason": "size", "ranges": [[1, 2]], "count": 2}, "q": 1},
            {"ts": 1_780_000_000_000, "k": "act", "q": 2, "action": {
                "key": "k", "device_id": "cab", "device_seq": 1, "kind": "job.done",
                "job_id": "j", "route_id": "r", "done_ms": 1_780_000_000_000}}]
    for i, (bus, names) in enumerate(SHIPPED_SIGNALS):
        rare.append({"ts": 1_780_000_000_000, "k": "can", "bus": bus, "q": 3 + i,
                     "sig": {n: round(100.5 + j, 1) for j, n in enumerate(names)}})
    frequent = [sim.wire_reading(q) for q in range(1, 200)]
    head = cbor2.dumps(rare)
    tail = b"".join(cbor2.dumps(r) for r in frequent)
    return (head + tail)[-DICTIONARY_BYTES:] if len(head) >= DICTIONARY_BYTES else \
        head + tail[-(DICTIONARY_BYTES - len(head)):]


def encode_readings(readings: list[dict]) -> bytes:
    import cbor2

    return cbor2.dumps(readings)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=600)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--options", action="store_true", help="also the other shapes (docstring)")
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
    if a.options:
        other = SimVehicle("lt-009999", "", 1, 1.0, 0.0, 1_780_000_000_000, seed=99)
        zdict = encode_readings([other.wire_reading(q) for q in range(1, 81)])
        print(f"other shapes (dictionary: {len(zdict)} B of another vehicle's readings):")
        for line in option_figures(readings, zdict, a.sessions):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
