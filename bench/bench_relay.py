"""One relay hop between `--reuseport` workers (backend/cluster/relay_edge.py) against one
datagram's trip through the gateway's UDP socket, same run: CPU per datagram.

    python bench/bench_relay.py [--datagrams 50000] [--size 100]

- relay: the member that got the datagram looks its CID up and sends it with the vehicle's
  address over the socketpair (`RelayEdge.forward`); the owner reads it and hands it to its
  edge (`RelayEdge._readable` → `receive`, a counter here). Both sides' CPU, one process.
- baseline: the same datagram sent to a UDP socket on loopback and read there (`sendto` +
  `recvfrom`, what every datagram costs a gateway at its socket before QUIC sees it).

The ratio is what a relayed datagram adds, in units of a datagram's own socket cost; the
QUIC work (~0.1–0.4 ms per reading on this machine, docs/benchmarks.md) dwarfs both.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.cluster.relay import ISSUED, RelayBook, encode_cids  # noqa: E402
from backend.cluster.relay_edge import RelayEdge  # noqa: E402

BURST = 64  # in flight at most: far below the buffers, none dropped


class _Edge:
    """Stands where the worker's EdgeServer sits: counts what reaches it."""

    def __init__(self):
        self.stats = collections.Counter()
        self.got = 0

    def receive(self, data, addr, now) -> None:
        self.got += 1

    def flush_soon(self) -> None:
        pass


async def relay(n: int, size: int) -> float:
    a_end, b_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    member, owner = _Edge(), _Edge()
    at_member = RelayEdge(RelayBook(1, 2), {0: a_end}, member)
    at_owner = RelayEdge(RelayBook(0, 2), {1: b_end}, owner)
    at_owner.drain(), at_member.drain()  # the hellos
    cid = os.urandom(8)
    at_member.book.received_cids(0, encode_cids([(ISSUED, cid)])[0])
    data = bytes([0x40]) + cid + b"\0" * (size - 9)
    addr = ("192.0.2.7", 50000)
    t0 = time.process_time()
    sent = 0
    while owner.got < n:
        while sent < n and sent - owner.got < BURST:
            at_member.forward(data, cid, addr, 0.0)
            sent += 1
        at_owner.drain()
    cpu = time.process_time() - t0
    at_member.close(), at_owner.close()
    a_end.close(), b_end.close()
    return cpu / n


def baseline(n: int, size: int) -> float:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dest = rx.getsockname()
    data = b"\x40" + b"\0" * (size - 1)
    t0 = time.process_time()
    sent = got = 0
    while got < n:
        while sent < n and sent - got < BURST:
            tx.sendto(data, dest)
            sent += 1
        while True:
            try:
                rx.recvfrom(2048)
            except BlockingIOError:
                break
            got += 1
    cpu = time.process_time() - t0
    rx.close(), tx.close()
    return cpu / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datagrams", type=int, default=50_000)
    p.add_argument("--size", type=int, default=100, help="bytes per datagram (a 1 Hz reading "
                   "batch is ~100)")
    a = p.parse_args()
    base, hop = [], []
    for _ in range(3):  # interleaved
        base.append(baseline(a.datagrams, a.size))
        hop.append(asyncio.run(relay(a.datagrams, a.size)))
    print(f"{a.datagrams} datagrams of {a.size} bytes, 3 interleaved runs (load "
          f"{os.getloadavg()[0]:.1f})")
    print(f"  UDP socket trip (baseline)   {min(base) * 1e6:.2f}–{max(base) * 1e6:.2f} µs")
    print(f"  relay hop (both workers)     {min(hop) * 1e6:.2f}–{max(hop) * 1e6:.2f} µs")
    print(f"  relay / baseline             {min(hop) / max(base):.2f}–{max(hop) / min(base):.2f}×")


if __name__ == "__main__":
    main()
