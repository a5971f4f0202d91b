"""The load generator's socket read: CPU per datagram of a batch read against a `recvfrom` each.

    .venv/bin/python bench/bench_client_read.py [--per-wakeup 1,3,14] [--wakeups 3000] [--rounds 3]

One `ClientEdge` (loadtest/edge.py) on a real loopback socket, its `_readable` called once per
emulated wakeup with `--per-wakeup` short-header datagrams waiting (sent from another socket
first, untimed), each routed by connection ID to a stand-in connection that only counts. Timed
is the process's CPU inside `_readable` (the reads, the routing, the edge's end-of-wakeup
flush), per datagram read. The two reads alternate on the same socket in the same run: the
seam's `batch_receiver` (qh3: `recvmmsg`) and the fallback, a `recvfrom` per datagram (what
every library got before). A client process at 600 × 1 Hz read 13–14 datagrams per socket
wakeup (docs/benchmarks.md, the load generator, session 13); fewer when it has idle CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from geostream.quic import library  # noqa: E402
from loadtest.edge import ClientEdge, _recvfrom_batch  # noqa: E402

CONNECTIONS = 64
CID_LENGTH = 8


class _Counted:
    n = 0

    def datagram_received(self, data: bytes, addr, now: float) -> None:
        _Counted.n += 1


def _round(edge: ClientEdge, sock, src, datagrams: list[bytes], wakeups: int) -> float:
    """µs of CPU per datagram read over `wakeups` wakeups."""
    to = sock.getsockname()[:2]
    cpu, _Counted.n = 0.0, 0
    for _ in range(wakeups):
        for data in datagrams:
            src.sendto(data, to)
        t = time.process_time()
        edge._readable(sock)
        cpu += time.process_time() - t
    return cpu * 1e6 / max(1, _Counted.n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-wakeup", default="1,3,14")
    ap.add_argument("--wakeups", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    lib = library("qh3")
    loop = asyncio.new_event_loop()
    edge = ClientEdge(lib, CID_LENGTH, loop=loop)
    sock = edge.socket_for("127.0.0.1")
    batch = edge._reads[sock]
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        if lib.batch_receiver(probe) is None:
            print("qh3 has no batch read here")
            return 1
    single = _recvfrom_batch(sock)
    cids = [bytes([i]) * CID_LENGTH for i in range(CONNECTIONS)]
    for cid in cids:
        edge.route(cid, _Counted())  # type: ignore[arg-type]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as src:
        print(f"µs of CPU per datagram read (least of {a.rounds}; each round "
              f"{a.wakeups} wakeups), load {' '.join(open('/proc/loadavg').read().split()[:3])}")
        for per in (int(x) for x in a.per_wakeup.split(",")):
            datagrams = [b"\x40" + cids[j % CONNECTIONS] + b"x" * (40 + j) for j in range(per)]
            got: dict[str, list[float]] = {"recvfrom": [], "batch": []}
            for _ in range(a.rounds):
                for name, read in (("recvfrom", single), ("batch", batch)):
                    edge._reads[sock] = read
                    got[name].append(_round(edge, sock, src, datagrams, a.wakeups))
            one, many = min(got["recvfrom"]), min(got["batch"])
            print(f"  {per:3d} per wakeup: recvfrom each {one:5.2f} "
                  f"({', '.join(f'{v:.2f}' for v in got['recvfrom'])}), batch read {many:5.2f} "
                  f"({', '.join(f'{v:.2f}' for v in got['batch'])}), ratio {many / one:.2f}×")
    edge.close()
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
