"""Cluster figures (docs/scaling.md §11): the router's cost per packet, against a plain UDP relay
measured in the same run, and fan-out latency through a real nats-server.

    python -m bench.bench_cluster [--packets 50000] [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from backend.cluster import tunnel
from backend.cluster.cids import CidLayout
from backend.cluster.edge import RouterEdge
from backend.cluster.router import HEARTBEAT_S, Router

PACKET_BYTES = 1200  # the QUIC libraries' datagram size
BURST = 64  # packets in flight: well below the socket buffers (~200 KB), none lost


def _packets(n: int) -> list[bytes]:
    cids = [CidLayout().encode(sid) for sid in (1, 2, 3)]
    return [bytes([0x41]) + cids[i % 3] + os.urandom(PACKET_BYTES - 9) for i in range(n)]


def decision_us(n: int, sealed: bool = True) -> float:
    """CPU per packet of the routing decision and the tunnel's framing: with the HMAC tag
    (what the router does), or the address header only (the unauthenticated baseline)."""
    r = Router()
    for sid in (1, 2, 3):
        r.heartbeat(sid, ("10.0.0.1", sid), 0.0)
    pkts = _packets(n)
    sealer = tunnel.Sealer(tunnel.generate_key(), tunnel.ROUTER_SENDER, from_router=True)
    frame = sealer.data if sealed else (
        lambda host, port, payload, now: tunnel._pack_address(host, port) + payload)
    t0 = time.process_time()  # CPU time: the machine is shared, wall time counts others' work
    for i, p in enumerate(pkts):
        node = r.route(p, 1.0)
        frame("10.1.2.3", 5000, p, i)
    assert node is not None
    return (time.process_time() - t0) / n * 1e6


class _Relay(asyncio.DatagramProtocol):
    """The baseline: forward every datagram unchanged to one address."""

    def __init__(self, to):
        self.to = to

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, self.to)


async def _pump(target, sink: socket.socket, pkts: list[bytes]) -> float:
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = 0
    t0 = time.perf_counter()
    for i in range(0, len(pkts), BURST):
        for p in pkts[i:i + BURST]:
            out.sendto(p, target)
        want = min(i + BURST, len(pkts))
        deadline = time.monotonic() + 5
        while got < want and time.monotonic() < deadline:
            try:
                sink.recv(2048)
                got += 1
            except BlockingIOError:
                await asyncio.sleep(0)
    out.close()
    if got < len(pkts):
        raise RuntimeError(f"lost {len(pkts) - got} packets on loopback")
    return (time.perf_counter() - t0) / len(pkts) * 1e6


async def forward_us(n: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    pkts = _packets(n)
    relay, _ = await loop.create_datagram_endpoint(lambda: _Relay(sink.getsockname()),
                                                   local_addr=("127.0.0.1", 0))
    base = await _pump(relay.get_extra_info("sockname"), sink, pkts)
    relay.close()
    edge = await RouterEdge(tunnel.generate_key()).start(("127.0.0.1", 0), ("127.0.0.1", 0))
    for sid in (1, 2, 3):  # every node is the sink: the router's full decision per packet
        edge.router.heartbeat(sid, sink.getsockname(), loop.time() + 3600)
    public, _ = edge.ports()
    routed = await _pump(("127.0.0.1", public), sink, pkts)
    edge.close()
    sink.close()
    return base, routed


def router_process_cpu_us(n: int) -> float:
    """CPU time (user + system, from /proc) of a real `python -m backend router` process per
    datagram it forwards from a vehicle to a node: decision, tunnel header, both syscalls."""
    import subprocess

    def free() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    public, tun = free(), free()
    keydir = tempfile.mkdtemp(prefix="bench-cluster-")
    key_file = os.path.join(keydir, "cluster.key")
    tunnel.write_key(key_file)
    sealer = tunnel.Sealer(tunnel.load_key(key_file), 1, from_router=False)
    proc = subprocess.Popen([sys.executable, "-m", "backend", "--cluster-key-file", key_file,
                             "router", "--listen", f"127.0.0.1:{public}",
                             "--tunnel", f"127.0.0.1:{tun}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    node = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    node.bind(("127.0.0.1", 0))
    node.settimeout(5)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert b"router ready" in proc.stdout.readline()
        node.sendto(sealer.heartbeat(time.time_ns() // 1000), ("127.0.0.1", tun))
        time.sleep(0.2)
        pkt = bytes([0x41]) + CidLayout().encode(1) + os.urandom(PACKET_BYTES - 9)
        tick = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            f = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / tick

        c0, beat = cpu(), time.monotonic()
        for i in range(0, n, BURST):
            for _ in range(min(BURST, n - i)):
                out.sendto(pkt, ("127.0.0.1", public))
            for _ in range(min(BURST, n - i)):
                node.recv(2048)
            if time.monotonic() - beat > HEARTBEAT_S:  # as a node does: it stays live
                node.sendto(sealer.heartbeat(time.time_ns() // 1000), ("127.0.0.1", tun))
                beat = time.monotonic()
        return (cpu() - c0) / n * 1e6
    finally:
        out.close()
        node.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(keydir, ignore_errors=True)


async def fanout_ms(rate: float, seconds: float) -> list[int]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from backend.fanout import NatsFanout
    from backend.hub import Hub, position_feature
    from tests.system.cluster.natsfixture import NatsServer

    server = NatsServer().start()
    try:
        gw = await NatsFanout(server.url, Hub()).start()
        node = await NatsFanout(server.url, Hub()).start()
        n = int(rate * seconds)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            v = f"v{i % 1000}"
            gw.position(v, 1_000 + i, position_feature(v, 1_000 + i, 52.0, 4.0, 50.0, 90.0, i))
        deadline = loop.time() + 10
        while node.stats["received"] < n and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await gw.stop()
        await node.stop()
        return node.latencies_ms
    finally:
        server.close()


def _pct(xs: list, q: float):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--packets", type=int, default=50_000)
    p.add_argument("--rate", type=float, default=1000.0, help="positions/s through NATS")
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args(argv)
    plain, sealed = decision_us(a.packets, sealed=False), decision_us(a.packets)
    print(f"router decision + tunnel header: {plain:.2f} µs/packet; + HMAC tag (authenticated "
          f"tunnel): {sealed:.2f} µs/packet; ratio {sealed / plain:.2f}")
    print(f"router process CPU per forwarded packet: {router_process_cpu_us(a.packets):.1f} µs "
          f"(load average {os.getloadavg()[0]:.1f})")
    base, routed = asyncio.run(forward_us(a.packets))
    print(f"plain UDP relay (baseline): {base:.1f} µs/packet; router: {routed:.1f} µs/packet; "
          f"ratio {routed / base:.2f}")
    lat = asyncio.run(fanout_ms(a.rate, a.seconds))
    print(f"NATS fan-out, {a.rate:g} positions/s for {a.seconds:g} s: {len(lat)} received, "
          f"p50 {statistics.median(lat):.0f} ms, p99 {_pct(lat, 0.99)} ms, max {max(lat)} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
