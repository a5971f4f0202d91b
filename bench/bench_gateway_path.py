"""Gateway CPU per reading at 1 Hz without sockets: our path against the bare QUIC library.

    .venv/bin/python bench/bench_gateway_path.py [--vehicles 400] [--seconds 6] [--profile]
        [--quic aioquic,qh3] [--writer-interval-ms 20]

N vehicles, each a sans-IO `QuicConnection` (of each library named by --quic, through the seam
geostream/quic/; default: the process's) with a geostream `ClientSession`, send one
reading per second at their own phase (as the load tester's do) into the gateway's real UDP
edge (backend/gateway_edge.py: routing by connection ID, the per-tick transmit, the timer heap)
and its `GatewayProtocol` objects, whose datagrams go to an in-memory transport instead of a
socket; each delivery is one socket wakeup (the edge's `receive_many`, then `flush_soon`). Behind
them the real writer, SQLite store (a temporary file, durable commits), alert engine with the
default rules, and hub (the writer paced as the backend's, `--writer-interval-ms`). The
baseline in the same run: the same clients and exchange against the library's own
`QuicConnectionProtocol` answering each batch with an ack-sized reply (same ACK timing
adjustments as the gateway, backend/quic_tuning.py), so the ratio is what the gateway adds per
reading to the library's packet work. With several libraries, each runs its bare and gateway
rounds in the same process, and the ratios between libraries are printed too. Gateway CPU =
process CPU − the clients' thread CPU (measured around every client call). `--profile` prints
cProfile of the gateway side's main thread (the clients' calls excluded). The round itself:
bench/gateway_round.py (shared with bench_store_path.py).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.pki import generate  # noqa: E402
from backend.writer import DEFAULT_INTERVAL_S  # noqa: E402
from bench.gateway_round import one  # noqa: E402
from bench.profile_table import print_profile  # noqa: E402
from geostream.quic import library  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=400)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--profile", action="store_true", help="cProfile the gateway side")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--profile-out", help="also write the cProfile stats to this file")
    ap.add_argument("--writer-interval-ms", type=float, default=DEFAULT_INTERVAL_S * 1000,
                    help="the writer's pacing (default: the backend's)")
    ap.add_argument("--quic", default="",
                    help="QUIC libraries to measure, comma-separated (default: the process's)")
    a = ap.parse_args()
    libs = [library(name) for name in a.quic.split(",")] if a.quic else [library()]
    results = {}
    prof = None
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        certs = generate(str(tmp / "pki"), ["localhost", "127.0.0.1"])
        for lib in libs:
            bare = asyncio.run(one(lib, a.vehicles, a.seconds, certs, True, tmp))
            prof = cProfile.Profile(time.thread_time) if a.profile else None  # CPU, not wall
            ours = asyncio.run(one(lib, a.vehicles, a.seconds, certs, False, tmp, prof,
                                   a.writer_interval_ms / 1000))
            results[lib.NAME] = (bare, ours)
    print(f"{a.vehicles} vehicles × 1 Hz for {a.seconds} s, no sockets (gateway side CPU per "
          f"reading; clients' CPU excluded); writer pacing {a.writer_interval_ms:g} ms")
    for name, (bare, ours) in results.items():
        for label, r in ((f"bare {name}, ack-sized reply (baseline)", bare),
                         (f"gateway on {name}: session + writer + SQLite + alerts + hub", ours)):
            print(f"  {label:<60}{r['gateway_ms'] * 1000:7.0f} µs/reading   "
                  f"datagrams {r['in']:.2f} in + {r['out']:.2f} out   "
                  f"acked {r['acked']}/{r['sent']}")
        print(f"  {'of which the store thread (SQLite writes)':<60}"
              f"{ours['store_ms'] * 1000:7.0f} µs/reading")
        print(f"  ratio ours / bare {name}: {ours['gateway_ms'] / bare['gateway_ms']:.2f}×")
    if len(results) > 1:
        (first, (b0, o0)), *rest = results.items()
        for name, (b, o) in rest:
            print(f"  same run, {name} / {first}: bare {b['gateway_ms'] / b0['gateway_ms']:.2f}×, "
                  f"gateway {o['gateway_ms'] / o0['gateway_ms']:.2f}×")
    if prof:
        stats = pstats.Stats(prof)
        if a.profile_out:
            stats.dump_stats(a.profile_out)
        stats.sort_stats("tottime")
        print(f"\ncProfile, gateway main thread, per acked reading ({ours['acked']}):")
        print_profile(stats, ours["acked"], "calls/r", a.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
