"""The gateway's socket reads alone: CPU per datagram of `UdpEdge._readable` (backend/
gateway_edge.py) on loopback, by how many datagrams wait at a wakeup.

    .venv/bin/python bench/bench_edge_read.py [--rounds 3] [--datagrams 30000]
        [--quic qh3,aioquic]

For each count k (1, 2, 5, 10, 32, 64), k client sockets (distinct source addresses) each
queue one 120-byte short-header datagram in the edge's socket, then one `_readable` call
drains them into a server that only counts (`receive` and `receive_many`, so an edge of any
revision runs here); the thread CPU of those calls, per datagram. With `--quic` naming
several libraries, their readers alternate in the same run: qh3's is a batch read
(`recvmmsg`, `batch_receiver`), aioquic's a `recvfrom` per datagram. The sending is not
measured. No lag sample (the counting server has no admission).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.gateway_edge import UdpEdge  # noqa: E402
from geostream.quic import library  # noqa: E402

WAITING = (1, 2, 5, 10, 32, 64)
PAYLOAD = b"\x40" + b"x" * 119  # a 1 Hz reading's datagram, short header


class _Counting:
    """Stands where the EdgeServer sits: counts what the edge hands it."""

    def __init__(self, lib):
        self.lib = lib
        self.stats: collections.Counter = collections.Counter()
        self.count = 0

    def connection_made(self, transport) -> None:
        pass

    def receive(self, data, addr, now) -> None:
        self.count += 1

    def receive_many(self, datagrams, now) -> None:
        self.count += len(datagrams)

    def flush_soon(self) -> None:
        pass


async def _measure(lib, datagrams: int) -> dict[int, float]:
    sink = _Counting(lib)
    edge = await UdpEdge.open(sink, "127.0.0.1", 0)
    edge.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    asyncio.get_running_loop().remove_reader(edge.get_extra_info("socket").fileno())
    dest = edge.get_extra_info("sockname")
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(max(WAITING))]
    out = {}
    try:
        for k in WAITING:
            cpu, read = 0.0, 0
            for _ in range(max(1, datagrams // k)):
                for s in senders[:k]:
                    s.sendto(PAYLOAD, dest)
                before = sink.count
                t = time.thread_time()
                edge._readable()
                cpu += time.thread_time() - t
                read += sink.count - before
            out[k] = cpu * 1e6 / max(1, read)
    finally:
        for s in senders:
            s.close()
        edge._loop.add_reader(edge.get_extra_info("socket").fileno(), edge._readable)
        edge.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--datagrams", type=int, default=30000, help="per count and round")
    ap.add_argument("--quic", default="qh3,aioquic")
    a = ap.parse_args()
    names = a.quic.split(",")
    rows: dict = {name: [] for name in names}
    for _ in range(a.rounds):
        for name in names:
            rows[name].append(asyncio.run(_measure(library(name), a.datagrams)))
    print("µs of thread CPU per datagram read, by datagrams waiting at the wakeup "
          f"({a.rounds} rounds, interleaved)")
    print("reader    " + "".join(f"{k:>20}" for k in WAITING))
    for name in names:
        print(f"{name:<10}" + "".join(
            f"{' / '.join(f'{r[k]:.2f}' for r in rows[name]):>20}" for k in WAITING))
    return 0


if __name__ == "__main__":
    sys.exit(main())
