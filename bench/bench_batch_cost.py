"""Where one §3.2 batch's encode and compress cost goes, on both sides (docs/protocol.md §3.2).

    .venv/bin/python bench/bench_batch_cost.py [--batches 1000] [--rounds 7]

The load tester's one-reading batches (3 positions : 1 CAN snapshot, several vehicles), each
step timed over all of them, every variant once per round in turn (interleaved), the least
and the most of the rounds per batch in µs, and each variant's least as a ratio to the
shipped path's least in the same run. Agent side: the reading's CBOR (`agent.wire_encode`),
the journal payload's array (`encoded_rows`), the shipped compressor (`DictionaryDeflater`),
its parts (the primed compressor's `copy`, `compress` + `flush`), a fresh compressor that
sets the 4 KiB dictionary per batch, other memLevels, and the whole frame (`encode_batch`).
Gateway side: the shipped `inflate_alone` against other ways of inflating the same bytes.
`--sizes` prints the bytes each compressor variant writes for the mix (the wire's part).
`--instructions` counts instead of timing: the same steps once each under valgrind's callgrind
(which must be installed), machine instructions per batch, which the machine's load does not
move (wall-clock ratios on a shared 2-core machine vary by ±25 %).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.journal_drain import encoded_rows  # noqa: E402
from agent.wire_encode import encode as wire_encode  # noqa: E402
from geostream import deflate  # noqa: E402
from geostream.codec import encode_batch  # noqa: E402
from geostream.deflate import LEVEL, WINDOW_BITS, DictionaryDeflater  # noqa: E402
from geostream.limits import MAX_MESSAGE_BYTES  # noqa: E402
from geostream.zdict import DICTIONARIES  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402

ZDICT = DICTIONARIES[1]


def mix(batches: int) -> tuple[list, list[bytes], list[bytes]]:
    """The load tester's readings (objects, journal payloads) and one-reading arrays."""
    readings, payloads, arrays = [], [], []
    vehicles = [SimVehicle(f"lt-{i:06d}", "", 1, 1.0, 0.0, 1_790_000_000_000, seed=i)
                for i in range(1, 11)]
    q = 0
    while len(arrays) < batches:
        for sim in vehicles:
            q += 1
            r = sim.reading(q // len(vehicles) + 1)
            payload = wire_encode(r)
            readings.append(r)
            payloads.append(payload)
            arrays.append(encoded_rows([(q, payload)]).cbor)
    return readings[:batches], payloads[:batches], arrays[:batches]


def primed(mem_level: int, level: int = LEVEL):
    return zlib.compressobj(level, zlib.DEFLATED, -WINDOW_BITS, mem_level, zdict=ZDICT)


def copy_compress(mem_level: int, level: int = LEVEL):
    z0 = primed(mem_level, level)

    def piece(data: bytes) -> bytes:
        z = z0.copy()
        return z.compress(data) + z.flush(zlib.Z_FINISH)
    return piece


def fresh_compress(data: bytes) -> bytes:
    z = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, deflate.SMALL_MEM_LEVEL, zdict=ZDICT)
    return z.compress(data) + z.flush(zlib.Z_FINISH)


_PRIMED_INFLATER = zlib.decompressobj(-WINDOW_BITS, zdict=ZDICT)


def inflate_fresh(zd: bytes) -> bytes:
    return zlib.decompressobj(-WINDOW_BITS, zdict=ZDICT).decompress(zd, MAX_MESSAGE_BYTES + 1)


def inflate_copy(zd: bytes) -> bytes:
    return _PRIMED_INFLATER.copy().decompress(zd, MAX_MESSAGE_BYTES + 1)


def inflate_small_out(zd: bytes) -> bytes:
    return zlib.decompressobj(-WINDOW_BITS, zdict=ZDICT).decompress(zd, 4096)


def timed(fn, items) -> float:
    """µs per item of `fn(item)` over `items`."""
    t0 = time.perf_counter_ns()
    for x in items:
        fn(x)
    return (time.perf_counter_ns() - t0) / len(items) / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sizes", action="store_true", help="bytes per batch of each compressor")
    ap.add_argument("--instructions", action="store_true", help="count under callgrind")
    ap.add_argument("--_once", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.instructions:
        return instructions(a.batches)
    readings, payloads, arrays = mix(a.batches)
    shipped = DictionaryDeflater(1)
    pieces = [shipped.piece(x) for x in arrays]
    ml = deflate.SMALL_MEM_LEVEL
    small = deflate._primed(1, ml)
    bare = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, ml)

    agent = {
        "reading's CBOR (wire_encode)": (wire_encode, readings),
        "journal payload → array (encoded_rows)": (lambda p: encoded_rows([(7, p)]), payloads),
        "frame with §3.2 batch (encode_batch)": (lambda x: encode_batch(3, x, shipped), arrays),
        "shipped DictionaryDeflater.piece": (shipped.piece, arrays),
        f"  its copy() alone (memLevel {ml})": (lambda _: small.copy(), arrays),
        "  copy + flush of no data (the final block)": (
            lambda _: small.copy().flush(zlib.Z_FINISH), arrays),
        "  one call into zlib (compress(b''))": (lambda _: bare.compress(b""), arrays),
        "fresh compressobj, no dictionary": (
            lambda _: zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, ml), arrays),
        "fresh compressobj(zdict), nothing compressed": (
            lambda _: zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, ml, zdict=ZDICT),
            arrays),
        "fresh compressobj(zdict) per batch": (fresh_compress, arrays),
    }
    for m in (1, 2, 3, 8):
        agent[f"copy + compress, memLevel {m}"] = (copy_compress(m), arrays)
    for lv in (3, 4, 5):
        agent[f"copy + compress, level {lv}, memLevel {ml}"] = (copy_compress(ml, lv), arrays)
    gateway = {
        "shipped inflate_alone": (lambda zd: deflate.inflate_alone(zd, 1, MAX_MESSAGE_BYTES),
                                  pieces),
        "fresh decompressobj, output ≤ 256 KiB": (inflate_fresh, pieces),
        "fresh decompressobj, output ≤ 4 KiB": (inflate_small_out, pieces),
        "primed decompressobj's copy()": (inflate_copy, pieces),
    }
    if a.sizes:
        print(f"bytes per batch, {a.batches} one-reading batches "
              f"(array {sum(map(len, arrays)) / len(arrays):.1f} B):")
        for name, (fn, items) in agent.items():
            if name.startswith(("copy", "shipped", "fresh")):
                print(f"  {name:<42} {sum(len(fn(x)) for x in items) / len(items):7.2f}")
    if a._once:  # under callgrind: each step once, a profile dump before each (`instructions`)
        for side in (agent, gateway):
            for name, (fn, items) in side.items():
                print(name, flush=True)
                time.sleep(0)
                for x in items:
                    fn(x)
        time.sleep(0)
        return 0
    results: dict[str, list[float]] = {}
    for _ in range(a.rounds):
        for side in (agent, gateway):
            for name, (fn, items) in side.items():
                results.setdefault(name, []).append(timed(fn, items))
    print(f"µs per one-reading batch, {a.batches} batches × {a.rounds} rounds (interleaved), "
          f"least–most; ratio of leasts to the shipped path; load {os.getloadavg()[0]:.1f}")
    for title, side, base in (("agent", agent, "shipped DictionaryDeflater.piece"),
                              ("gateway", gateway, "shipped inflate_alone")):
        print(f" {title}:")
        least = min(results[base])
        for name in side:
            r = results[name]
            print(f"  {name:<42} {min(r):7.2f}–{max(r):7.2f}  {min(r) / least:5.2f}×")
    return 0


def instructions(batches: int) -> int:
    """Instructions per batch of each step: this bench under callgrind, one profile dump
    at each `time.sleep(0)` (the steps' boundaries)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg")
        names = subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-before=time_sleep",
             f"--callgrind-out-file={out}", sys.executable, __file__, "--_once",
             "--batches", str(batches)],
            check=True, capture_output=True, text=True).stdout.splitlines()
        total = re.compile(r"^(?:summary|totals): (\d+)", re.M)
        counts = []
        for part in range(2, len(names) + 2):  # part 1 is the set-up before the first step
            with open(f"{out}.{part}") as f:
                counts.append(int(total.search(f.read()).group(1)) / batches)
    print(f"instructions per one-reading batch (callgrind), {batches} batches, each step once")
    base = dict(zip(names, counts, strict=True))
    for name, n in base.items():
        ref = "shipped inflate_alone" if "inflat" in name or "decompressobj" in name else \
            "shipped DictionaryDeflater.piece"
        print(f"  {name:<42} {n:9.0f}  {n / base[ref]:5.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
