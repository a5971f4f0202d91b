"""The gateway's CPU per liveness probe answered: the Version Negotiation probe of revision 6
against the handshake probe before it (docs/protocol.md §8).

    .venv/bin/python bench/bench_probe.py [--probes 200] [--rounds 3] [--library qh3]

Sans-IO (no sockets): the real `EdgeServer` of the gateway's edge, its output kept in a list.
Per round, interleaved in one process, `--probes` of each kind from as many client addresses:

- **vn**: the agent's `VersionProbe` datagram handed to the edge, its answer checked;
- **handshake**: a client `QuicConnection` of the same library connects, the two sides
  exchange datagrams until its handshake completes, and it closes (its Finished first), as
  the probe of revisions 1-5 did; the gateway's session tickets are left out (the real
  gateway also writes one to its ticket store per probe), so this is its cost at the least.

Only the gateway's side is timed (thread CPU of `receive` and the flush of what it sends,
and the handshake connection's draining-period timer); the client's work is not. Printed per
round: µs of gateway CPU per probe and datagrams/bytes each way per probe, and the ratio.
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
from agent.version_probe import VersionProbe  # noqa: E402
from backend.gateway_edge import EdgeConnection, EdgeServer  # noqa: E402
from backend.pki import generate  # noqa: E402
from geostream import ALPN  # noqa: E402
from geostream.quic import library  # noqa: E402

SERVER_ADDR = ("127.0.0.1", 4433)
# A handshake's datagrams both ways until quiet, at most this many exchanges
MAX_EXCHANGES = 20


class _Wire:
    """Stands where the gateway's UDP socket sits: keeps what the edge sends."""

    def __init__(self):
        self.datagrams: list[tuple[bytes, tuple]] = []

    def sendto(self, data: bytes, addr) -> None:
        self.datagrams.append((data, addr))

    def send_many(self, datagrams) -> None:
        self.datagrams.extend(datagrams)

    def get_extra_info(self, name, default=None):
        return default

    def close(self) -> None:
        pass


class _Gateway:
    """The edge and the clock of the gateway side, its CPU counted."""

    def __init__(self, lib, certs: dict):
        cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
        cfg.load_cert_chain(certs["cert"], certs["key"])
        self.server = EdgeServer(lib, configuration=cfg, create_protocol=EdgeConnection)
        self.wire = _Wire()
        self.server.connection_made(self.wire)
        self.cpu = 0.0
        self.datagrams_in = self.bytes_in = 0

    def receive(self, datagrams: list[bytes], addr, now: float) -> list[bytes]:
        """Hand `datagrams` to the edge and flush: what it sent back."""
        self.datagrams_in += len(datagrams)
        self.bytes_in += sum(len(d) for d in datagrams)
        t = time.thread_time()
        for data in datagrams:
            self.server.receive(data, addr, now)
        self.server._flush()
        self.cpu += time.thread_time() - t
        back, self.wire.datagrams = self.wire.datagrams, []
        return [d for d, _ in back]

    def expire(self, now: float) -> None:
        """Run the edge's timers due by `now` (the closed connections' draining periods)."""
        t = time.thread_time()
        for conn in self.server.timers.pop_due(now):
            conn.wake(now)
        self.server._flush()
        self.cpu += time.thread_time() - t
        self.wire.datagrams.clear()


def vn_probes(lib, certs: dict, n: int, now: float) -> dict:
    gw = _Gateway(lib, certs)
    out = out_bytes = answered = 0
    for i in range(n):
        probe = VersionProbe()
        back = gw.receive([probe.datagram], (f"10.0.{i // 250}.{i % 250 + 1}", 40000), now)
        out, out_bytes = out + len(back), out_bytes + sum(len(d) for d in back)
        answered += any(probe.answered_by(d) for d in back)
    assert answered == n and not gw.server._connections, "every probe answered, none opened"
    return _result(gw, n, out, out_bytes)


def handshake_probes(lib, certs: dict, n: int, now: float) -> dict:
    import ssl

    gw = _Gateway(lib, certs)
    out = out_bytes = done = 0
    for i in range(n):
        cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                    server_name="localhost", verify_mode=ssl.CERT_REQUIRED)
        cfg.load_verify_locations(cafile=certs["ca"])
        client = lib.QuicConnection(configuration=cfg)
        addr = (f"10.1.{i // 250}.{i % 250 + 1}", 40000)
        client.connect(SERVER_ADDR, now=now)
        closed = False
        for _ in range(MAX_EXCHANGES):
            sent = [d for d, _ in client.datagrams_to_send(now=now)]
            if not sent:
                break
            back = gw.receive(sent, addr, now)
            out, out_bytes = out + len(back), out_bytes + sum(len(d) for d in back)
            for data in back:
                client.receive_datagram(data, SERVER_ADDR, now=now)
            events = list(iter(client.next_event, None))
            if not closed and any(isinstance(e, lib.HandshakeCompleted) for e in events):
                done += 1
                closed = True
                # the Finished goes before the close (loadtest/edge.py EdgeLink.close)
                sent = [d for d, _ in client.datagrams_to_send(now=now)]
                back = gw.receive(sent, addr, now)
                out, out_bytes = out + len(back), out_bytes + sum(len(d) for d in back)
                client.close()
    gw.expire(now + 60.0)  # every closed connection's draining period ends
    assert done == n, f"{done} of {n} handshakes completed"
    return _result(gw, n, out, out_bytes)


def _result(gw: _Gateway, n: int, out: int, out_bytes: int) -> dict:
    return {"us_per_probe": gw.cpu * 1e6 / n, "in": gw.datagrams_in / n,
            "in_bytes": gw.bytes_in / n, "out": out / n, "out_bytes": out_bytes / n}


async def main(args) -> None:
    lib = library(args.library)
    now = asyncio.get_running_loop().time()
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate(str(Path(tmp) / "pki"), ["localhost", "127.0.0.1"])
        vn_probes(lib, certs, 10, now)  # warm-up: imports, first-call costs
        handshake_probes(lib, certs, 10, now)
        print(f"gateway CPU per probe answered ({lib.NAME}, {args.probes} probes per kind "
              f"and round, interleaved)")
        ratios = []
        for r in range(args.rounds):
            kinds = [("vn", vn_probes), ("handshake", handshake_probes)]
            if r % 2:
                kinds.reverse()
            got = {name: fn(lib, certs, args.probes, now) for name, fn in kinds}
            for name in ("vn", "handshake"):
                g = got[name]
                print(f"  round {r + 1} {name:9s}: {g['us_per_probe']:8.1f} µs; in "
                      f"{g['in']:.1f} datagrams {g['in_bytes']:.0f} B, out {g['out']:.1f} "
                      f"datagrams {g['out_bytes']:.0f} B per probe")
            ratios.append(got["handshake"]["us_per_probe"] / got["vn"]["us_per_probe"])
        print(f"handshake / vn gateway CPU per probe: {min(ratios):.0f}-{max(ratios):.0f}x")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probes", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--library", default="qh3")
    asyncio.run(main(p.parse_args()))
