"""The gateway's transport layer alone: CPU per exchange of the UDP edge against the bare
QUIC library, no sockets, no application.

    .venv/bin/python bench/bench_edge_path.py [--vehicles 1000] [--seconds 6] [--rounds 2]
        [--quic qh3] [--profile]

N client `QuicConnection`s (sans-IO, through the seam geostream/quic/) each write one
~110-byte stream chunk per second at their own phase, as a one-reading batch is on the wire.
The server side answers every chunk with a 20-byte reply (an `ack`'s size) at the next
"commit", every 20 ms (the writer's pacing), with the pending QUIC ACK riding along
(`ack_with_data`), as the gateway does:

- **edge**: the gateway's real `EdgeServer` (backend/gateway_edge.py: routing by CID, the
  receive path, the per-tick transmit, the deadlines, the loop timer) with a connection whose
  `quic_event_received` only queues the chunk for the commit; the datagrams of one slice
  of the drive are one socket wakeup's read (`receive_many`, or `receive` per datagram on
  an edge without it, then `flush_soon`);
- **bare** (the baseline, same run): the library's sans-IO calls alone per exchange
  (`receive_datagram`, `next_event`, `send_stream_data`, `ack_with_data`,
  `datagrams_to_send`, `get_timer`), with no routing, no timers and no loop timer.

Server CPU = the process's thread CPU − the clients' (measured around every client call).
The ratio edge / bare is what the edge adds to the library's own packet work per exchange;
rounds alternate bare, edge, bare, edge, … in one process.
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
from backend.gateway_edge import EdgeConnection, EdgeServer  # noqa: E402
from backend.pki import generate  # noqa: E402
from backend.quic_tuning import delay_acks  # noqa: E402
from bench.profile_table import print_profile  # noqa: E402
from geostream import ALPN  # noqa: E402
from geostream.limits import IDLE_TIMEOUT_S  # noqa: E402
from geostream.quic import library  # noqa: E402

SERVER = ("127.0.0.1", 4433)
# the agent's ACK delay at 1 s pacing (geostream.quic_acks.ack_delay_for(1.0))
CLIENT_ACK_DELAY_S = 1.5
# a one-reading batch and its ack on the wire (geostream codec, revision 5)
CHUNK = b"\x01" * 110
REPLY = b"\x02" * 20
# the writer's pacing (backend/writer.py DEFAULT_INTERVAL_S): replies leave per commit
COMMIT_S = 0.020
WARMUP_S = 2
# the drive's time slice: the clients whose phase came in one slice send in one wakeup
SLICE_S = 0.005
# connections opened at once in the setup (below MAX_HANDSHAKES_IN_PROGRESS)
HANDSHAKE_WAVE = 200


class _Wire:
    """The server side's transport: datagrams land in their client's inbox by address."""

    def __init__(self) -> None:
        self.inboxes: dict = {}
        self.sent = 0

    def send_many(self, datagrams) -> None:
        self.sent += len(datagrams)
        inboxes = self.inboxes
        for data, addr in datagrams:
            inboxes[addr].append(data)

    def sendto(self, data, addr) -> None:
        self.send_many([(data, addr)])

    def get_extra_info(self, name, default=None):
        return default

    def close(self) -> None:
        pass


class _EchoConnection(EdgeConnection):
    """An edge connection whose application queues every chunk for the next commit."""

    pending: list  # the run's, set on the class per run

    def __init__(self, quic, edge):
        super().__init__(quic, edge)
        delay_acks(self._lib, quic)
        self._lib.trim_new_connection(quic)

    def quic_event_received(self, event) -> None:
        lib = self._lib
        if type(event) is lib.StreamDataReceived:
            self.pending.append((self, event.stream_id))
        elif isinstance(event, lib.HandshakeCompleted):
            lib.trim_after_handshake(self._quic)

    def reply(self, stream_id: int) -> None:
        self._quic.send_stream_data(stream_id, REPLY)
        self._lib.ack_with_data(self._quic)
        self.transmit()


class _Client:
    def __init__(self, lib, i: int, cfg):
        self.addr = ("127.0.0.1", 20000 + i)
        self.lib = lib
        self.quic = lib.QuicConnection(configuration=cfg)
        lib.advertise_max_ack_delay(self.quic, CLIENT_ACK_DELAY_S)
        self.inbox: list[bytes] = []
        self.stream: int | None = None
        self.replies = 0
        self.handshaken = False

    def pump(self, now: float, send: bool) -> list[bytes]:
        quic, lib = self.quic, self.lib
        for data in self.inbox:
            quic.receive_datagram(data, SERVER, now=now)
        self.inbox.clear()
        timer = quic.get_timer()
        if timer is not None and timer <= now:
            quic.handle_timer(now)
        while (ev := quic.next_event()) is not None:
            if isinstance(ev, lib.StreamDataReceived):
                self.replies += 1
            elif isinstance(ev, lib.HandshakeCompleted):
                self.handshaken = True
        if send:
            if self.stream is None:
                self.stream = quic.get_next_available_stream_id()
            lib.ack_with_data(quic)
            quic.send_stream_data(self.stream, CHUNK)
        return [d for d, _ in quic.datagrams_to_send(now=now)]


class _Bare:
    """The baseline server: one sans-IO connection per client, the library's calls only."""

    def __init__(self, lib, cfg, wire: _Wire):
        self.lib, self.cfg, self.wire = lib, cfg, wire
        self.conns: dict = {}
        self.pending: list = []

    def receive(self, data: bytes, addr, now: float) -> None:
        quic = self.conns.get(addr)
        if quic is None:
            odcid = self.lib.destination_cid(data, 8)
            quic = self.conns[addr] = self.lib.QuicConnection(
                configuration=self.cfg, original_destination_connection_id=odcid)
            delay_acks(self.lib, quic)
        handshaken = quic._handshake_complete
        quic.receive_datagram(data, addr, now=now)
        data_event = self.lib.StreamDataReceived
        while (ev := quic.next_event()) is not None:
            if type(ev) is data_event:
                self.pending.append((quic, addr, ev.stream_id))
        if not handshaken:  # handshake flights leave at once
            self._send(quic, addr, now)

    def flush_soon(self) -> None:
        pass

    def _send(self, quic, addr, now: float) -> None:
        out = quic.datagrams_to_send(now=now)
        quic.get_timer()
        if out:
            self.wire.send_many([(d, addr) for d, _ in out])

    def commit(self, now: float) -> None:
        pending, self.pending = self.pending, []
        lib = self.lib
        for quic, addr, stream_id in pending:
            quic.send_stream_data(stream_id, REPLY)
            lib.ack_with_data(quic)
            self._send(quic, addr, now)


class Run:
    def __init__(self, lib, n: int, certs: dict, bare: bool, prof: cProfile.Profile | None):
        self.lib, self.n, self.bare, self.prof = lib, n, bare, prof
        self.certs = certs
        self.client_cpu = 0.0
        self.profiling = False

    def _client(self, c: _Client, now: float, send: bool) -> list[bytes]:
        if self.profiling:
            self.prof.disable()
        t = time.thread_time()
        try:
            return c.pump(now, send)
        finally:
            self.client_cpu += time.thread_time() - t
            if self.profiling:
                self.prof.enable()

    def _deliver(self, c: _Client, datagrams: list[bytes], now: float) -> None:
        self._deliver_read([(d, c.addr) for d in datagrams], now)

    def _deliver_read(self, read: list, now: float) -> None:
        """One socket wakeup's read: the edge's `receive_many` (else `receive` each, as an
        edge without it read), then one `flush_soon`."""
        server = self.server
        receive_many = getattr(server, "receive_many", None)
        if receive_many is not None:
            receive_many(read, now)
        else:
            for d, addr in read:
                server.receive(d, addr, now)
        server.flush_soon()

    async def setup(self) -> None:
        lib, loop = self.lib, asyncio.get_running_loop()
        self.loop = loop
        server_cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                           idle_timeout=IDLE_TIMEOUT_S)
        server_cfg.load_cert_chain(self.certs["cert"], self.certs["key"])
        client_cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                           idle_timeout=IDLE_TIMEOUT_S, server_name="localhost")
        client_cfg.load_verify_locations(cafile=self.certs["ca"])
        self.wire = _Wire()
        self.pending: list = []
        if self.bare:
            self.server = _Bare(lib, server_cfg, self.wire)
        else:
            conn_class = type("Echo", (_EchoConnection,), {"pending": self.pending})
            self.server = EdgeServer(lib, configuration=server_cfg, create_protocol=conn_class)
            self.server.connection_made(self.wire)
        self.clients = [_Client(lib, i, client_cfg) for i in range(self.n)]
        self._commits = loop.call_later(COMMIT_S, self._commit)
        # in waves below the edge's limit of handshakes in progress (edge_core.Admission)
        for first in range(0, self.n, HANDSHAKE_WAVE):
            wave = self.clients[first:first + HANDSHAKE_WAVE]
            for c in wave:
                self.wire.inboxes[c.addr] = c.inbox
                c.quic.connect(SERVER, now=loop.time())
                self._deliver(c, [d for d, _ in c.quic.datagrams_to_send(now=loop.time())],
                              loop.time())
            for _ in range(400):  # bounded
                await asyncio.sleep(0.005)
                for c in wave:
                    self._deliver(c, c.pump(loop.time(), False), loop.time())
                if all(c.handshaken for c in wave):
                    break
            else:
                raise RuntimeError("handshakes did not complete")
        for c in self.clients:
            lib.delay_acks_up_to(c.quic, CLIENT_ACK_DELAY_S)

    def _commit(self) -> None:
        now = self.loop.time()
        if self.bare:
            self.server.commit(now)
        else:
            pending, self.pending[:] = list(self.pending), []
            for conn, stream_id in pending:
                conn.reply(stream_id)
        self._commits = self.loop.call_later(COMMIT_S, self._commit)

    async def drive(self, seconds: float) -> int:
        """Every client sends one chunk per second at its own phase; returns how many."""
        loop = self.loop
        start = loop.time()
        phase = [start + i / self.n for i in range(self.n)]
        sent, i, n = 0, 0, self.n
        end = start + seconds
        while (now := loop.time()) < end:
            read: list = []
            while phase[i] <= now:
                c = self.clients[i]
                read += [(d, c.addr) for d in self._client(c, now, True)]
                phase[i] += 1.0
                sent += 1
                i = (i + 1) % n
            if read:
                self._deliver_read(read, now)
            # the next slice (the commits' timer runs meanwhile): the sends due in one slice
            # arrive in one wakeup, as several datagrams per socket wakeup do under load
            await asyncio.sleep(max(0.0, min(phase[i], now + SLICE_S) - loop.time()))
        return sent

    async def measure(self, seconds: float) -> dict:
        await self.drive(WARMUP_S)
        await asyncio.sleep(0.2)  # the warm-up's last commits
        for c in self.clients:
            self._client(c, self.loop.time(), False)
        replies0 = sum(c.replies for c in self.clients)
        out0 = self.wire.sent
        if self.prof is not None:
            self.prof.enable()
            self.profiling = True
        t0, c0 = time.thread_time(), self.client_cpu
        sent = await self.drive(seconds)
        await asyncio.sleep(0.2)  # the last commits
        cpu = time.thread_time() - t0
        if self.prof is not None:
            self.profiling = False
            self.prof.disable()
        client = self.client_cpu - c0
        for c in self.clients:  # the replies that arrived after each one's last send
            self._client(c, self.loop.time(), False)
        replies = sum(c.replies for c in self.clients) - replies0
        self._commits.cancel()
        return {"sent": sent, "replies": replies, "out": (self.wire.sent - out0) / max(1, sent),
                "server_us": (cpu - client) * 1e6 / max(1, sent),
                "client_us": client * 1e6 / max(1, sent)}


async def one(lib, n: int, seconds: float, certs: dict, bare: bool,
              prof: cProfile.Profile | None = None) -> dict:
    run = Run(lib, n, certs, bare, prof)
    await run.setup()
    return await run.measure(seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quic", default="qh3")
    ap.add_argument("--profile", action="store_true", help="cProfile the last edge round")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    lib = library(a.quic)
    rows = []
    prof = None
    with tempfile.TemporaryDirectory() as d:
        certs = generate(str(Path(d) / "pki"), ["localhost", "127.0.0.1"])
        for r in range(a.rounds):
            bare = asyncio.run(one(lib, a.vehicles, a.seconds, certs, True))
            last = r == a.rounds - 1
            prof = cProfile.Profile(time.thread_time) if a.profile and last else None
            edge = asyncio.run(one(lib, a.vehicles, a.seconds, certs, False, prof))
            rows.append((bare, edge))
    print(f"{a.vehicles} vehicles × 1 Hz for {a.seconds:g} s on {lib.NAME}, no sockets: server "
          f"CPU per exchange (clients excluded), commits every {COMMIT_S * 1000:g} ms")
    for bare, edge in rows:
        print(f"  bare {bare['server_us']:6.1f} µs ({bare['out']:.2f} out, "
              f"{bare['replies']}/{bare['sent']} answered)   edge {edge['server_us']:6.1f} µs "
              f"({edge['out']:.2f} out, {edge['replies']}/{edge['sent']} answered)   "
              f"edge / bare {edge['server_us'] / bare['server_us']:.2f}×   "
              f"edge − bare {edge['server_us'] - bare['server_us']:5.1f} µs")
    if prof is not None:
        stats = pstats.Stats(prof)
        sent = rows[-1][1]["sent"]
        print(f"\ncProfile of the last edge round, per exchange ({sent}): "
              f"{stats.total_calls / sent:.1f} function calls, "
              f"{stats.total_tt * 1e6 / sent:.1f} µs profiled")
        print_profile(stats, sent, "calls/x", a.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
