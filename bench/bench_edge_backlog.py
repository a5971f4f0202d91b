"""The longest callback of the gateway's UDP edge after a stall: N vehicles' datagrams were
received while the loop was busy elsewhere (a collection, a long commit), so their
receive-flushes (`RECEIVE_FLUSH_DELAY_S` after each receive) all come due at once.

    .venv/bin/python bench/bench_edge_backlog.py [--vehicles 3000] [--rounds 3]

Sans-IO (no sockets, bench/bench_edge_path.py's clients and wire): each vehicle sends one
~110-byte chunk, all handed to the real `EdgeServer` in one go, with no commit to answer
them; then the loop runs until every receive-flush has transmitted. Per round, the same
backlog twice in one process: **one callback** (`transmits_per_callback` unbounded, as before
session 12) and **bounded** (`MAX_TRANSMITS_PER_CALLBACK`). Printed: the longest edge
callback (`_wake` or `_flush`, thread CPU), how many edge callbacks the backlog took, and the
edge's CPU per transmit (the bound must not make the work dearer).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.gateway_edge import MAX_TRANSMITS_PER_CALLBACK, RECEIVE_FLUSH_DELAY_S  # noqa: E402
from backend.pki import generate  # noqa: E402
from bench.bench_edge_path import Run  # noqa: E402
from geostream.quic import library  # noqa: E402


class _Timed:
    """Wraps the edge's loop callbacks: the thread CPU of every outermost call (a `_wake`
    calls `_flush` itself: counted once, in the wake)."""

    def __init__(self):
        self.cpu: list[float] = []
        self._depth = 0

    def wrap(self, fn):
        def timed(*args):
            self._depth += 1
            t = time.thread_time()
            try:
                return fn(*args)
            finally:
                self._depth -= 1
                if not self._depth:
                    self.cpu.append(time.thread_time() - t)
        return timed


async def one(lib, n: int, certs: dict, bound: int) -> dict:
    run = Run(lib, n, certs, False, None)
    await run.setup()
    run._commits.cancel()  # nothing answers: the receive-flushes carry the ACKs
    server, loop = run.server, run.loop
    await asyncio.sleep(2 * RECEIVE_FLUSH_DELAY_S)  # the handshakes' own flushes done
    server.transmits_per_callback = bound
    timed = _Timed()
    server._wake, server._flush = timed.wrap(server._wake), timed.wrap(server._flush)
    if server._wake_handle is not None:  # armed with the unwrapped one: again, wrapped
        server._wake_handle.cancel()
        server._wake_handle = server._wake_at = None
    server.arm()
    now = loop.time()
    for c in run.clients:  # the stall: every vehicle's datagram read in one go
        run._deliver(c, c.pump(now, True), now)
    sent0 = run.wire.sent
    for _ in range(1000):  # bounded: until every receive-flush transmitted
        await asyncio.sleep(RECEIVE_FLUSH_DELAY_S / 4)
        if run.wire.sent - sent0 >= n and not server._flush_queue and not server._dirty:
            break
    calls = timed.cpu
    return {"longest_ms": max(calls) * 1e3, "callbacks": len(calls),
            "us_per_transmit": sum(calls) * 1e6 / max(1, run.wire.sent - sent0),
            "sent": run.wire.sent - sent0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quic", default="qh3")
    a = ap.parse_args()
    lib = library(a.quic)
    print(f"{a.vehicles} receive-flushes due at once on {lib.NAME}, no sockets: the edge's "
          f"longest callback (thread CPU)")
    with tempfile.TemporaryDirectory() as d:
        certs = generate(str(Path(d) / "pki"), ["localhost", "127.0.0.1"])
        for _ in range(a.rounds):
            rows = [(label, asyncio.run(one(lib, a.vehicles, certs, bound)))
                    for label, bound in (("one callback", sys.maxsize),
                                         ("bounded", MAX_TRANSMITS_PER_CALLBACK))]
            print("  " + "   ".join(
                f"{label}: longest {r['longest_ms']:6.1f} ms in {r['callbacks']:3d} callbacks, "
                f"{r['us_per_transmit']:5.1f} µs per transmit ({r['sent']} sent)"
                for label, r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
