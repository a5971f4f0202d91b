"""Steering by SO_REUSEPORT + classic BPF (backend/cluster/reuseport.py) against the kernel's
own hash, same run: CPU per datagram of the whole process (sender + receivers) and where
the datagrams went.

    python bench/bench_reuseport.py [--datagrams 50000] [--group 2]

Each datagram is a QUIC short header whose destination CID carries server id i % group, sent
from one socket (one 4-tuple, as after a migration the kernel's hash would keep every
datagram of a vehicle on one member whatever its CID says). With the program, member k must
get exactly the server id k datagrams; without it, one member gets them all. The router's
figure to set against it (a user-space hop per datagram): `python bench/bench_cluster.py`.
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.cluster.cids import CidLayout  # noqa: E402
from backend.cluster.reuseport import attach, reuseport_socket  # noqa: E402

BURST = 64  # in flight at most: far below the receive buffers, none dropped


def run(n: int, group: int, steer: bool) -> tuple[float, list[int]]:
    socks = [reuseport_socket("127.0.0.1", 0)]
    port = socks[0].getsockname()[1]
    socks += [reuseport_socket("127.0.0.1", port) for _ in range(group - 1)]
    if steer:
        attach(socks[0], group)
    for s in socks:
        s.setblocking(False)
    payloads = [bytes([0x40]) + CidLayout().encode(i % group) + b"\0" * 60 for i in range(256)]
    counts = [0] * group
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.process_time()
    sent = got = 0
    while got < n:
        while sent < n and sent - got < BURST:
            out.sendto(payloads[sent % 256], ("127.0.0.1", port))
            sent += 1
        ready, _, _ = select.select(socks, [], [], 1)
        if not ready:
            break
        for s in ready:
            while True:
                try:
                    s.recv(2048)
                except BlockingIOError:
                    break
                counts[socks.index(s)] += 1
                got += 1
    cpu = time.process_time() - t0
    for s in (*socks, out):
        s.close()
    return cpu * 1e6 / max(1, got), counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datagrams", type=int, default=50_000)
    ap.add_argument("--group", type=int, default=2)
    a = ap.parse_args()
    hashed = run(a.datagrams, a.group, steer=False)
    steered = run(a.datagrams, a.group, steer=True)
    print(f"{a.datagrams} datagrams to a group of {a.group} sockets on loopback")
    for name, (us, counts) in (("kernel hash (baseline)", hashed), ("BPF by server id", steered)):
        print(f"  {name:<24}{us:6.2f} µs CPU per datagram (send + receive)   per member {counts}")
    print(f"  ratio steered / hashed: {steered[0] / hashed[0]:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
