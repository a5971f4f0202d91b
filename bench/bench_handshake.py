"""What one QUIC handshake costs each side: the gateway's CPU and the vehicle's, per kind of
handshake, against the bare QUIC library's handshake in the same run. No sockets.

    .venv/bin/python bench/bench_handshake.py [--quic qh3,aioquic] [--rounds 3]
        [--handshakes 150] [--kinds full,resumed,0rtt,busy,retry] [--tickets 10000]
        [--groups default|x25519] [--profile KIND]

Kinds: **full** (no ticket), **resumed** (a session ticket, no early data), **0rtt** (a
ticket and the agent's `hello` as 0-RTT early data), **busy** (the gateway sheds: its answer
is a CONNECTION_CLOSE `busy`), **retry** (past `RETRY_ABOVE`: a Retry, then the full
handshake with its token). The ticket of a resumed kind comes from a full handshake before
it, not measured.

Two pairs, alternated round by round in one process:

- **bare** (the baseline): the library's sans-IO `QuicConnection` on both sides, the
  server's tickets in a dict, the library's default configurations (busy and retry have no
  bare form: the gateway's are compared with the bare full handshake);
- **ours**: the gateway in place, as backend/gateway.py builds it: the real `EdgeServer`
  (backend/gateway_edge.py: routing, the admission and Retry tokens, CIDs, timers) with the
  transport part of `GatewayProtocol` (ACK delay, the memory trims), its configuration, and
  its ticket store on a file (backend/tickets.py) holding `--tickets` tickets of other
  vehicles; the client as the agent builds it (agent/uplink.py `quic_configuration`,
  agent/quic_link.py: its ACK delay, and its ticket file loaded before and written after).

CPU is the thread's, measured around each side's calls (the other side's excluded); datagrams
and bytes are counted per side. `--groups x25519` makes the clients offer X25519 alone
instead of qh3's default X25519MLKEM768 + X25519 (aioquic offers no hybrid: unchanged).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import datetime
import os
import pstats
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from agent.ticket_file import TicketFile  # noqa: E402
from backend.edge_core import SHED_QUEUE_DELAY_S  # noqa: E402
from backend.gateway_edge import EdgeConnection, EdgeServer  # noqa: E402
from backend.pki import generate  # noqa: E402
from backend.quic_tuning import delay_acks  # noqa: E402
from backend.tickets import TicketStore  # noqa: E402
from bench.profile_table import print_profile  # noqa: E402
from geostream import ALPN  # noqa: E402
from geostream.limits import IDLE_TIMEOUT_S  # noqa: E402
from geostream.quic import library  # noqa: E402
from geostream.quic_acks import ack_delay_for  # noqa: E402

KINDS = ("full", "resumed", "0rtt", "busy", "retry")
SERVER = ("127.0.0.1", 4433)
# not loopback: the admission's per-address bounds apply, as to a vehicle
CLIENT_HOST = "10.1.0.1"
# the agent's hello as early data (a token and its fields: ~100–200 bytes on the wire)
HELLO = b"\x03" * 160
# emulated time between flights (never a timer: every flight answers the one before)
STEP_S = 0.002


class _Wire:
    """Where the gateway's socket sits: what it sends, by address."""

    def __init__(self) -> None:
        self.out: list = []

    def send_many(self, datagrams) -> None:
        self.out.extend(datagrams)

    def sendto(self, data, addr) -> None:
        self.out.append((data, addr))

    def get_extra_info(self, name, default=None):
        return default

    def close(self) -> None:
        pass


class _GatewayTransport(EdgeConnection):
    """What `GatewayProtocol` (backend/gateway_conn.py) does for the transport of a new
    connection and at its handshake's end; its session (hello, batches) is not a handshake's."""

    def __init__(self, quic, edge):
        super().__init__(quic, edge)
        delay_acks(self._lib, quic)
        self._lib.trim_new_connection(quic)

    def quic_event_received(self, event) -> None:
        if isinstance(event, self._lib.HandshakeCompleted):
            self._lib.trim_after_handshake(self._quic)


def _restrict_groups(lib, quic) -> None:
    """Make a qh3 client offer X25519 alone (its TLS context is built at `connect`)."""
    if lib.NAME != "qh3":
        return
    create_tls = quic._create_tls

    def creating(*args, **kwargs):
        bridge = create_tls(*args, **kwargs)
        ctx = bridge.tls
        ctx._supported_groups = [g for g in ctx._supported_groups if int(g) != 0x11EC]
        return bridge

    quic._create_tls = creating


class Side:
    """One side's CPU and traffic over a run."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.datagrams = 0
        self.bytes = 0
        self._t = 0.0

    def __enter__(self):
        self._t = time.thread_time()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu += time.thread_time() - self._t

    def sent(self, datagrams: list) -> None:
        self.datagrams += len(datagrams)
        self.bytes += sum(len(d) for d in datagrams)


class BareServer:
    """The library's sans-IO server connection per handshake, its tickets in a dict."""

    def __init__(self, lib, certs: dict) -> None:
        self.lib = lib
        self.cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
        self.cfg.load_cert_chain(certs["cert"], certs["key"])
        self.tickets: dict = {}
        self.conns: dict = {}

    def receive(self, datagrams: list, addr, now: float) -> list:
        quic = self.conns.get(addr)
        if quic is None:
            quic = self.conns[addr] = self.lib.QuicConnection(
                configuration=self.cfg,
                original_destination_connection_id=self.lib.destination_cid(datagrams[0], 8),
                session_ticket_fetcher=self.tickets.pop,
                session_ticket_handler=lambda t: self.tickets.__setitem__(t.ticket, t))
        for data in datagrams:
            quic.receive_datagram(data, addr, now=now)
        while quic.next_event() is not None:
            pass
        out = [d for d, _ in quic.datagrams_to_send(now=now)]
        quic.get_timer()
        return out

    def shed(self, now: float) -> None:
        raise NotImplementedError("the bare server has no admission")

    def retry_all(self) -> None:
        raise NotImplementedError("the bare server has no admission")

    def close(self) -> None:
        pass


class GatewayServer:
    """The gateway's edge as backend/gateway.py starts it, sans-IO."""

    def __init__(self, lib, certs: dict, ticket_file: str) -> None:
        self.lib = lib
        cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                    idle_timeout=IDLE_TIMEOUT_S)
        cfg.load_cert_chain(certs["cert"], certs["key"])
        self.tickets = TicketStore(ticket_file, lib=lib)
        self.edge = EdgeServer(lib, configuration=cfg, create_protocol=_GatewayTransport,
                               session_ticket_fetcher=self.tickets.pop,
                               session_ticket_handler=self.tickets.add)
        self.wire = _Wire()
        self.edge.connection_made(self.wire)

    def receive(self, datagrams: list, addr, now: float) -> list:
        self.edge.receive_many([(d, addr) for d in datagrams], now)
        self.edge._flush(now)
        out, self.wire.out = self.wire.out, []
        return [d for d, _ in out]

    def shed(self, now: float) -> None:
        """The gateway is behind: new connections are refused `busy`."""
        self.edge.admission.queue_delay(SHED_QUEUE_DELAY_S + 1, now)

    def retry_all(self) -> None:
        self.edge.admission.retry_above = 0

    def close(self) -> None:
        self.edge.close()
        self.tickets.close()


class Client:
    """One vehicle's connection: bare (the library's defaults) or as the agent builds it."""

    def __init__(self, lib, certs: dict, ours: bool, ticket_path: str, x25519: bool) -> None:
        self.lib, self.certs, self.ours, self.x25519 = lib, certs, ours, x25519
        self.ticket_file = TicketFile(ticket_path, lib=lib)
        self.ticket = None  # the bare client's, in memory

    def _configuration(self, resume: bool):
        lib = self.lib
        if self.ours:  # agent/uplink.py quic_configuration
            cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                        idle_timeout=IDLE_TIMEOUT_S, server_name="localhost",
                                        verify_mode=ssl.CERT_REQUIRED)
            cfg.load_verify_locations(cafile=self.certs["ca"])
            if resume:
                cfg.session_ticket = self.ticket_file.load()
            return cfg
        cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                    server_name="localhost")
        cfg.load_verify_locations(cafile=self.certs["ca"])
        if resume:
            cfg = dataclasses.replace(cfg, session_ticket=self.ticket)
        return cfg

    def _keep(self, ticket) -> None:
        self.ticket = ticket

    def connect(self, resume: bool, early: bool, now: float):
        lib = self.lib
        cfg = self._configuration(resume)
        handler = self.ticket_file.save if self.ours else self._keep
        quic = lib.QuicConnection(configuration=cfg, session_ticket_handler=handler)
        if self.ours:  # agent/quic_link.py: the paced agent's ACK delay
            lib.advertise_max_ack_delay(quic, ack_delay_for(1.0))
        if self.x25519:
            _restrict_groups(lib, quic)
        quic.connect(SERVER, now=now)
        if early:
            quic.send_stream_data(quic.get_next_available_stream_id(), HELLO)
        return quic


@dataclasses.dataclass
class Result:
    handshakes: int = 0
    client_us: float = 0.0
    server_us: float = 0.0
    client_datagrams: float = 0.0
    server_datagrams: float = 0.0
    client_bytes: float = 0.0
    server_bytes: float = 0.0
    resumed: int = 0
    early: int = 0
    refused: int = 0


def handshake(lib, client: Client, server, kind: str, addr, now: float,
              cs: Side | None, ss: Side | None) -> tuple[float, bool, bool, bool]:
    """One handshake of `kind` between `client` and `server`, each side's calls measured into
    `cs` / `ss` (None: not measured). Returns (now, completed, resumed, early data accepted)."""
    cs, ss = cs or Side(), ss or Side()
    resume = kind in ("resumed", "0rtt")
    with cs:
        quic = client.connect(resume, kind == "0rtt", now)
        out = [d for d, _ in quic.datagrams_to_send(now=now)]
    cs.sent(out)
    done = resumed = early = False
    for _ in range(16):  # bounded: a handshake is 2-4 flights
        if not out:
            break
        now += STEP_S
        with ss:
            back = server.receive(out, addr, now)
        ss.sent(back)
        now += STEP_S
        with cs:
            for data in back:
                quic.receive_datagram(data, SERVER, now=now)
            while (event := quic.next_event()) is not None:
                if isinstance(event, lib.HandshakeCompleted):
                    done, resumed = True, event.session_resumed
                    early = bool(event.early_data_accepted)
                elif isinstance(event, lib.ConnectionTerminated):
                    break
            out = [d for d, _ in quic.datagrams_to_send(now=now)]
        cs.sent(out)
    return now, done, resumed, early


def run_pair(lib, certs: dict, kind: str, n: int, ours: bool, tmp: Path, tickets: int,
             x25519: bool, prof: cProfile.Profile | None = None) -> Result:
    """`n` handshakes of `kind` of one pair; the resumed kinds' tickets from full ones."""
    return asyncio.run(_pair(lib, certs, kind, n, ours, tmp, tickets, x25519, prof))


async def _pair(lib, certs: dict, kind: str, n: int, ours: bool, tmp: Path, tickets: int,
                x25519: bool, prof: cProfile.Profile | None) -> Result:
    """`run_pair` in an event loop (the edge's timers and flushes: never run, sans-IO)."""
    store = tmp / f"tickets-{os.getpid()}-{time.monotonic_ns()}.sqlite"
    if ours:
        _fill(lib, str(store), tickets)
    server = GatewayServer(lib, certs, str(store)) if ours else BareServer(lib, certs)
    if kind == "retry":
        server.retry_all()
    res, cs, ss = Result(), Side(), Side()
    now = 1000.0
    try:
        for i in range(n):
            addr = (CLIENT_HOST, 20000 + i)
            client = Client(lib, certs, ours, str(tmp / f"ticket-{i}.json"), x25519)
            if kind in ("resumed", "0rtt"):  # the ticket: a full handshake, not measured
                now, done, _, _ = handshake(lib, client, server, "full", addr, now, None, None)
                assert done, "the full handshake before a resumed one failed"
                addr = (CLIENT_HOST, 40000 + i)
            if kind == "busy":
                server.shed(now)
            if prof is not None:
                prof.enable()
            now, done, resumed, early = handshake(lib, client, server, kind, addr, now, cs, ss)
            if prof is not None:
                prof.disable()
            res.handshakes += done
            res.resumed += resumed
            res.early += early
            res.refused += kind == "busy" and not done
            now += 0.01
    finally:
        server.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(str(store) + suffix):
                os.remove(str(store) + suffix)
    res.client_us, res.server_us = cs.cpu * 1e6 / n, ss.cpu * 1e6 / n
    res.client_datagrams, res.server_datagrams = cs.datagrams / n, ss.datagrams / n
    res.client_bytes, res.server_bytes = cs.bytes / n, ss.bytes / n
    return res


def _fill(lib, path: str, count: int) -> None:
    """A ticket file holding `count` tickets of other vehicles (a fleet's gateway has one
    per vehicle)."""
    store = TicketStore(path, lib=lib)
    now = datetime.datetime.now(datetime.UTC)
    db = getattr(store, "_db", None)  # the SQLite store of main before session 18
    if db is not None:
        db.execute("BEGIN")
    for _ in range(count):
        ticket = lib.SessionTicket(
            age_add=1, cipher_suite=lib.CipherSuite.AES_128_GCM_SHA256,
            not_valid_after=lib.ticket_time(now + datetime.timedelta(days=1)),
            not_valid_before=lib.ticket_time(now), resumption_secret=os.urandom(32),
            server_name="localhost", ticket=os.urandom(32), max_early_data_size=0xFFFFFFFF,
            other_extensions=[])
        if db is None:
            store.add(ticket)
        else:  # one transaction for all
            import json

            from geostream.tickets import ticket_to_json
            db.execute("INSERT INTO session_tickets (label, not_valid_after_ms, ticket) "
                       "VALUES (?, ?, ?)", (ticket.ticket, int(now.timestamp() * 1000)
                                            + 86_400_000, json.dumps(ticket_to_json(ticket))))
    if db is not None:
        db.execute("COMMIT")
    store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quic", default="qh3,aioquic")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--handshakes", type=int, default=150, help="per kind, pair and round")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--tickets", type=int, default=10_000,
                    help="other vehicles' tickets in the gateway's ticket file")
    ap.add_argument("--groups", choices=("default", "x25519"), default="default")
    ap.add_argument("--profile", metavar="KIND", help="cProfile the ours pair's last round")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    kinds = a.kinds.split(",")
    x25519 = a.groups == "x25519"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        certs = generate(str(tmp / "pki"), ["localhost", "127.0.0.1"])
        for name in a.quic.split(","):
            lib = library(name)
            rows: dict = {k: [] for k in kinds}
            prof = None
            for r in range(a.rounds):
                for kind in kinds:
                    bare = None if kind in ("busy", "retry") else run_pair(
                        lib, certs, kind, a.handshakes, False, tmp, a.tickets, x25519)
                    last = r == a.rounds - 1
                    prof = cProfile.Profile(time.thread_time) if (
                        a.profile == kind and last) else prof
                    ours = run_pair(lib, certs, kind, a.handshakes, True, tmp, a.tickets, x25519,
                                    prof if a.profile == kind and last else None)
                    rows[kind].append((bare, ours))
            report(lib.NAME, a, rows)
            if prof is not None:
                stats = pstats.Stats(prof)
                print(f"\ncProfile of the last {a.profile} round of ours, per handshake "
                      f"({a.handshakes}), both sides: {stats.total_calls / a.handshakes:.0f} "
                      f"function calls")
                print_profile(stats, a.handshakes, "calls/hs", a.top)
    return 0


def _span(values: list[float]) -> str:
    return f"{min(values):7.0f}–{max(values):<7.0f}"


def report(name: str, a, rows: dict) -> None:
    print(f"\n{name}: {a.handshakes} handshakes per kind, pair and round, {a.rounds} rounds "
          f"(min–max), groups {a.groups}, {a.tickets} tickets in the gateway's file; "
          f"CPU µs per handshake; datagrams / bytes per handshake")
    full_bare = [b.server_us for b, _ in rows.get("full", []) if b is not None]
    for kind, pairs in rows.items():
        ours = [o for _, o in pairs]
        bare = [b for b, _ in pairs if b is not None]
        o = ours[-1]
        line = (f"  {kind:8s} gateway {_span([x.server_us for x in ours])} "
                f"agent {_span([x.client_us for x in ours])} | out gw {o.server_datagrams:.1f}"
                f" / {o.server_bytes:.0f} B, agent {o.client_datagrams:.1f} / "
                f"{o.client_bytes:.0f} B | done {o.handshakes}/{a.handshakes} resumed "
                f"{o.resumed} 0-RTT {o.early}")
        print(line)
        if bare:
            b = bare[-1]
            pairs_ = list(zip(ours, bare, strict=True))
            ratio_s = [x.server_us / y.server_us for x, y in pairs_]
            ratio_c = [x.client_us / y.client_us for x, y in pairs_]
            extra = statistics.median(x.server_us - y.server_us for x, y in pairs_)
            print(f"  {'':8s} bare    {_span([x.server_us for x in bare])} client "
                  f"{_span([x.client_us for x in bare])} | out srv {b.server_datagrams:.1f} / "
                  f"{b.server_bytes:.0f} B, client {b.client_datagrams:.1f} / "
                  f"{b.client_bytes:.0f} B | done {b.handshakes} resumed {b.resumed} 0-RTT "
                  f"{b.early}")
            print(f"  {'':8s} ours / bare: gateway {min(ratio_s):.2f}–{max(ratio_s):.2f}×, "
                  f"agent {min(ratio_c):.2f}–{max(ratio_c):.2f}×; gateway − bare "
                  f"{extra:.0f}"
                  f" µs (median)")
        elif full_bare:
            print(f"  {'':8s} gateway / bare full handshake's server: "
                  f"{min(x.server_us for x in ours) / max(full_bare):.2f}–"
                  f"{max(x.server_us for x in ours) / min(full_bare):.2f}×")


if __name__ == "__main__":
    sys.exit(main())
