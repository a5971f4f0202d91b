"""The load generator's client CPU per vehicle-second without sockets, against a bare baseline.

    .venv/bin/python bench/bench_client_path.py [--vehicles 500] [--seconds 10] [--profile]

One load-generator process's real client path (loadtest/client.py `Worker`, its `Driver`s
running the agent's `UplinkMachine` and drain order, the `ClientEdge` with its wheel and
`EdgeLink`s on qh3), on an emulated clock and an in-memory wire instead of the event loop and
UDP sockets: each datagram the clients send reaches a sans-IO gateway stand-in (a qh3 server
connection and a `ServerSession` per vehicle that acknowledges every batch at once) and its
answers come back `ONE_WAY_S` later, read by the edge's own `_readable`. Only the client side's
calls are timed (thread CPU around every callback of the emulated loop and every socket
wakeup), so the gateway stand-in costs nothing here.

The baseline in the same run, the same wire and gateway stand-in: bare vehicles that each
second encode one reading into a `ClientSession` batch (the agent's session and codec) and
drive their qh3 connection directly (`send_stream_data`, `datagrams_to_send`, the ack's
`receive_datagram`, events, `get_timer`), with no machine, journal, wheel or edge: what a
vehicle-second costs at least in this process. The ratio ours / bare is what the load
generator adds per vehicle-second to that floor.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import heapq
import math
import pstats
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from agent.journal_drain import encoded_rows  # noqa: E402
from agent.quic_link import v6_address  # noqa: E402
from backend.pki import generate  # noqa: E402
from backend.quic_tuning import delay_acks  # noqa: E402
from bench.profile_table import print_profile  # noqa: E402
from geostream import ALPN  # noqa: E402
from geostream.limits import IDLE_TIMEOUT_S  # noqa: E402
from geostream.quic import AGENT_DEFAULT_LIBRARY, library  # noqa: E402
from geostream.quic_acks import ack_delay_for  # noqa: E402
from geostream.session import (  # noqa: E402
    Acknowledged,
    BatchReceived,
    ClientSession,
    HelloReceived,
    ServerSession,
)
from loadtest.client import Worker  # noqa: E402
from loadtest.edge import ClientEdge, _recvfrom_batch  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402

SERVER = ("127.0.0.1", 4433)
CLIENT_ADDR = ("::ffff:127.0.0.1", 40000, 0, 0)
# the emulated wire's one-way delay and the emulated clock's step
ONE_WAY_S = 0.002
STEP_S = 0.001
# not measured: handshakes, the welcome, the first batches
WARMUP_S = 2.0
# bound on the emulated seconds the fleet gets to connect
CONNECT_BOUND_S = 120.0


class _Handle:
    __slots__ = ("when", "cb", "args", "cancelled")

    def __init__(self, when, cb, args):
        self.when, self.cb, self.args, self.cancelled = when, cb, args, False

    def cancel(self) -> None:
        self.cancelled = True


class EmulatedLoop:
    """What the client edge and worker use of an event loop, on an emulated clock."""

    def __init__(self):
        self.t = 1000.0
        self.ready: collections.deque[_Handle] = collections.deque()
        self.timers: list = []  # (when, n, handle)
        self._n = 0

    def time(self) -> float:
        return self.t

    def call_soon(self, cb, *args):
        h = _Handle(self.t, cb, args)
        self.ready.append(h)
        return h

    def call_at(self, when, cb, *args):
        h = _Handle(when, cb, args)
        self._n += 1
        heapq.heappush(self.timers, (when, self._n, h))
        return h

    def call_later(self, delay, cb, *args):
        return self.call_at(self.t + delay, cb, *args)

    def add_reader(self, fd, cb, *args) -> None:
        pass

    def remove_reader(self, fd) -> None:
        pass

    def due(self) -> bool:
        return bool(self.ready) or bool(self.timers and self.timers[0][0] <= self.t)

    def next_at(self) -> float:
        """The next timer's time (a cancelled one's too: at worst an idle step)."""
        return self.timers[0][0] if self.timers else math.inf

    def run_due(self) -> None:
        """Every callback due by now (ready ones, then timers due), until none is left."""
        while True:
            while self.ready:
                h = self.ready.popleft()
                if not h.cancelled:
                    h.cb(*h.args)
            if self.timers and self.timers[0][0] <= self.t:
                h = heapq.heappop(self.timers)[2]
                if not h.cancelled:
                    h.cb(*h.args)
                continue
            return


class _Sock:
    """A client UDP socket on the emulated wire."""

    def __init__(self, wire: Wire):
        self.wire = wire
        self.inbox: collections.deque[bytes] = collections.deque()

    def sendto(self, data, addr) -> None:
        self.wire.to_gateway(bytes(data), self)

    def recvfrom(self, n):
        if not self.inbox:
            raise BlockingIOError
        return self.inbox.popleft(), self.wire.server

    def recv_batch(self) -> list:
        """Up to 32 datagrams a call, [] when none waits (qh3's `recvmmsg` read)."""
        inbox, server = self.inbox, self.wire.server
        return [(inbox.popleft(), server) for _ in range(min(32, len(inbox)))]

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


class BenchEdge(ClientEdge):
    """The client edge with emulated sockets."""

    wire: Wire

    def socket_for(self, local_host: str):
        sock = self._sockets.get(local_host)
        if sock is None:
            sock = self._sockets[local_host] = _Sock(self.wire)
            # as the library gives it: a batch read (qh3), else a `recvfrom` a datagram
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as real:
                batch = self.lib.batch_receiver(real) is not None
            self._reads[sock] = sock.recv_batch if batch else _recvfrom_batch(sock)
        return sock


class _GatewayConn:
    """One vehicle's connection at the gateway stand-in: acks every batch at once."""

    def __init__(self, lib, cfg, odcid: bytes):
        self.quic = lib.QuicConnection(configuration=cfg,
                                       original_destination_connection_id=odcid)
        delay_acks(lib, self.quic)
        self.session = ServerSession()
        self.stream: int | None = None
        self.sock = None


class Wire:
    """The emulated network and a sans-IO gateway stand-in (untimed)."""

    def __init__(self, lib, certs: dict, loop: EmulatedLoop):
        self.lib, self.loop = lib, loop
        self.server = v6_address(SERVER)
        cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                                    idle_timeout=IDLE_TIMEOUT_S)
        cfg.load_cert_chain(certs["cert"], certs["key"])
        self.cfg = cfg
        self.routes: dict[bytes, _GatewayConn] = {}
        self.in_flight: collections.deque = collections.deque()  # (at, sock or conn, data)
        self.timers: list = []  # (when, n, conn)
        self._n = 0
        self.datagrams_up = self.datagrams_down = 0

    def next_at(self) -> float:
        """When the next datagram arrives or the next gateway timer is due."""
        return min(self.in_flight[0][0] if self.in_flight else math.inf,
                   self.timers[0][0] if self.timers else math.inf)

    def to_gateway(self, data: bytes, sock) -> None:
        self.datagrams_up += 1
        self.in_flight.append((self.loop.t + ONE_WAY_S, None, data, sock))

    def deliver(self) -> set:
        """Everything whose one-way delay passed; returns the client sockets that got some."""
        now, lib = self.loop.t, self.lib
        woken: set = set()
        touched: set = set()
        while self.in_flight and self.in_flight[0][0] <= now:
            _, to_sock, data, from_sock = self.in_flight.popleft()
            if to_sock is not None:
                to_sock.inbox.append(data)
                woken.add(to_sock)
                continue
            cid = lib.destination_cid(data, 8)
            conn = self.routes.get(cid)
            if conn is None:
                if data[0] & 0xB0 != 0x80:  # not a long header's Initial
                    continue
                conn = self.routes[cid] = _GatewayConn(lib, self.cfg, cid)
                self.routes[conn.quic.host_cid] = conn
            conn.sock = from_sock
            conn.quic.receive_datagram(data, CLIENT_ADDR, now=now)
            touched.add(conn)
        while self.timers and self.timers[0][0] <= now:
            conn = heapq.heappop(self.timers)[2]
            t = conn.quic.get_timer()
            if t is not None and t <= now:
                conn.quic.handle_timer(now)
                touched.add(conn)
        for conn in touched:
            self._serve(conn, now)
        return woken

    def _serve(self, conn: _GatewayConn, now: float) -> None:
        lib, quic, s = self.lib, conn.quic, conn.session
        while (ev := quic.next_event()) is not None:
            kind = type(ev)
            if kind is lib.StreamDataReceived:
                conn.stream = ev.stream_id
                for e in s.receive(ev.data):
                    if type(e) is HelloReceived:
                        s.accept(int(now * 1000))
                    elif type(e) is BatchReceived:
                        s.committed([r["q"] for r in e.batch.readings])
            elif kind is lib.ConnectionIdIssued:
                self.routes[ev.connection_id] = conn
        if conn.stream is not None and (data := s.data_to_send()):
            quic.send_stream_data(conn.stream, data)
            lib.ack_with_data(quic)
        try:
            out = quic.datagrams_to_send(now=now)
        except Exception:  # noqa: BLE001 - as the gateway's edge: a first flight beyond the
            out = []  # anti-amplification budget goes once the client's next datagram came
        for data, _ in out:
            self.datagrams_down += 1
            self.in_flight.append((now + ONE_WAY_S, conn.sock, data, None))
        t = quic.get_timer()
        if t is not None:
            self._n += 1
            heapq.heappush(self.timers, (t, self._n, conn))


class Timed:
    """Thread CPU of the client side's calls (and, if asked, their cProfile)."""

    def __init__(self, prof: cProfile.Profile | None):
        self.cpu = 0.0
        self.prof = prof
        self.measuring = False

    def __call__(self, fn, *args):
        prof = self.prof if self.measuring else None
        t = time.thread_time()
        if prof is not None:
            prof.enable()
        try:
            return fn(*args)
        finally:
            if prof is not None:
                prof.disable()
            self.cpu += time.thread_time() - t


def _spec(n: int, certs: dict) -> dict:
    return {"send_interval_s": 1.0, "ca": certs["ca"], "mode": "steady", "seed": 1,
            "rate_hz": 1.0,
            "vehicles": [{"id": f"bench-{i:05d}", "token": "t", "epoch": 1,
                          "server": list(SERVER)} for i in range(n)]}


def run_ours(lib, n: int, seconds: float, certs: dict, prof) -> dict:
    """The load generator's worker, driven on the emulated loop; client CPU per vehicle-second."""
    loop = EmulatedLoop()
    wire = Wire(lib, certs, loop)
    spec = _spec(n, certs)
    spec["quic_library"] = lib.NAME
    w = Worker(spec, loop=loop, edge_class=BenchEdge)
    w.edge.wire = wire
    timed = Timed(prof)
    orig_run = loop.run_due

    def read(socks) -> None:
        for sock in socks:
            w.edge._readable(sock)
        orig_run()

    def step() -> None:
        if loop.due():
            timed(orig_run)
        if woken := wire.deliver():
            timed(read, woken)
        loop.t = max(loop.t + STEP_S, min(loop.next_at(), wire.next_at()))

    for d in w.drivers:
        d.start()
    until = loop.t + CONNECT_BOUND_S
    while w.welcomed < n and loop.t < until:
        step()
    if w.welcomed < n:
        raise RuntimeError(f"{w.welcomed} of {n} welcomed")
    w.ramp_limit = None
    t0 = loop.t
    for i, d in enumerate(w.drivers):
        # readings begin a second on, past every vehicle's first liveness tick, each at its own
        # phase: as in the load test, where "go" comes seconds after the handshakes, a
        # vehicle's pacing does not start in step with the tick its handshake began
        d.sim.start = t0 + 1.0 + i / n
        d.sim.making = True
    while loop.t < t0 + 1.0 + WARMUP_S:
        step()
    cpu0, acked0, up0, down0 = timed.cpu, w.acked, wire.datagrams_up, wire.datagrams_down
    wakes0 = w.edge.stats["owner_wakes"]
    timed.measuring = True
    end = loop.t + seconds
    while loop.t < end:
        step()
    timed.measuring = False
    vs = n * seconds
    return {"us": (timed.cpu - cpu0) * 1e6 / vs, "acked": w.acked - acked0, "offered": vs,
            "wakes": (w.edge.stats["owner_wakes"] - wakes0) / vs,
            "up": (wire.datagrams_up - up0) / vs, "down": (wire.datagrams_down - down0) / vs,
            "errors": dict(w.errors)}


class _Bare:
    """A vehicle with nothing but its session and its qh3 connection."""

    def __init__(self, lib, cfg, i: int, sock: _Sock, start: float, timers: list):
        self.lib, self.sock, self.timers = lib, sock, timers
        self.quic = lib.QuicConnection(configuration=cfg)
        lib.advertise_max_ack_delay(self.quic, ack_delay_for(1.0))
        self.session = ClientSession(f"bench-{i:05d}", "t", 1)
        self.sim = SimVehicle(f"bench-{i:05d}", "t", 1, 1.0, start, 1_800_000_000_000, seed=i)
        self.sim.making = False  # until the run starts
        self.stream: int | None = None
        self.acked = 0
        self.timer_at: float | None = None  # the timer filed in `timers`

    def pump(self, now: float) -> None:
        lib, quic = self.lib, self.quic
        while (ev := quic.next_event()) is not None:
            if type(ev) is lib.StreamDataReceived:
                for e in self.session.receive(ev.data):
                    if type(e) is Acknowledged:
                        self.acked += e.newly_acked
            elif type(ev) is lib.HandshakeCompleted:
                lib.delay_acks_up_to(quic, ack_delay_for(1.0))
        if data := self.session.data_to_send():
            if self.stream is None:
                self.stream = quic.get_next_available_stream_id()
            quic.send_stream_data(self.stream, data)
            lib.ack_with_data(quic)
        for data, _ in quic.datagrams_to_send(now=now):
            self.sock.sendto(data, None)
        t = quic.get_timer()
        if t is not None and t != self.timer_at:
            heapq.heappush(self.timers, (t, id(self), self))
        self.timer_at = t


def run_bare(lib, n: int, seconds: float, certs: dict) -> dict:
    loop = EmulatedLoop()
    wire = Wire(lib, certs, loop)
    cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                idle_timeout=IDLE_TIMEOUT_S, server_name="localhost")
    cfg.load_verify_locations(cafile=certs["ca"])
    timed = Timed(None)
    vehicles = []
    by_sock: dict = {}
    timers: list = []  # (when, id, vehicle): each vehicle's QUIC timer
    for i in range(n):
        sock = _Sock(wire)
        v = _Bare(lib, cfg, i, sock, 0.0, timers)
        by_sock[sock] = v
        v.quic.connect(wire.server, now=loop.t)
        v.pump(loop.t)
        vehicles.append(v)
    def receive(socks, now: float) -> None:
        for sock in socks:
            v = by_sock[sock]
            while sock.inbox:
                v.quic.receive_datagram(sock.inbox.popleft(), wire.server, now=now)
            v.pump(now)

    def expire(now: float) -> None:
        due = set()
        while timers and timers[0][0] <= now:
            at, _, v = heapq.heappop(timers)
            if at == v.timer_at:
                v.timer_at = None
                due.add(v)
        for v in due:
            t = v.quic.get_timer()
            if t is not None and t <= now:
                v.quic.handle_timer(now)
            v.pump(now)  # files its next timer

    def step(next_send: float = math.inf) -> None:
        now = loop.t
        if woken := wire.deliver():
            timed(receive, woken, now)
        if timers and timers[0][0] <= now:
            timed(expire, now)
        loop.t = max(now + STEP_S, min(next_send, wire.next_at(),
                                       timers[0][0] if timers else math.inf))

    until = loop.t + CONNECT_BOUND_S
    while not all(v.session.ready for v in vehicles) and loop.t < until:
        step()
    if not all(v.session.ready for v in vehicles):
        raise RuntimeError("bare sessions did not open")
    t0 = loop.t
    for i, v in enumerate(vehicles):
        v.sim.start = t0 + i / n
        v.sim.making = True
    due = [(t0 + i / n, i) for i in range(n)]
    heapq.heapify(due)

    def send(v: _Bare, now: float) -> None:
        v.sim.make_due(now)
        q = v.sim.journal.next_seq - 1
        payload = v.sim.journal.rows.pop(q)[1]
        v.session.send_batch(encoded_rows([(q, payload)]))
        v.pump(now)

    def send_due(now: float) -> None:
        while due and due[0][0] <= now:
            at, i = heapq.heappop(due)
            send(vehicles[i], now)
            heapq.heappush(due, (at + 1.0, i))

    def run_for(seconds_: float) -> None:
        end = loop.t + seconds_
        while loop.t < end:
            if due and due[0][0] <= loop.t:
                timed(send_due, loop.t)
            step(due[0][0] if due else math.inf)

    run_for(WARMUP_S)
    cpu0, acked0 = timed.cpu, sum(v.acked for v in vehicles)
    run_for(seconds)
    vs = n * seconds
    return {"us": (timed.cpu - cpu0) * 1e6 / vs,
            "acked": sum(v.acked for v in vehicles) - acked0, "offered": vs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2, help="bare/ours pairs, interleaved")
    ap.add_argument("--profile", action="store_true", help="cProfile the client side (ours)")
    ap.add_argument("--top", type=int, default=35)
    a = ap.parse_args()
    lib = library(None, default=AGENT_DEFAULT_LIBRARY)
    prof = cProfile.Profile(time.thread_time) if a.profile else None
    with tempfile.TemporaryDirectory() as d:
        certs = generate(str(Path(d) / "pki"), ["localhost", "127.0.0.1"])
        rows = []
        for _ in range(a.rounds):
            bare = run_bare(lib, a.vehicles, a.seconds, certs)
            ours = run_ours(lib, a.vehicles, a.seconds, certs, prof)
            rows.append((bare, ours))
    print(f"{a.vehicles} vehicles × 1 Hz for {a.seconds:g} emulated s, no sockets, "
          f"{lib.NAME}: client CPU per vehicle-second")
    for bare, ours in rows:
        print(f"  bare session + QUIC {bare['us']:6.1f} µs (acked {bare['acked']}/"
              f"{bare['offered']:.0f})   load generator {ours['us']:6.1f} µs (acked "
              f"{ours['acked']}/{ours['offered']:.0f}, datagrams {ours['up']:.2f} up + "
              f"{ours['down']:.2f} down and {ours['wakes']:.2f} timer wakes per vehicle-second, "
              f"errors {ours['errors'] or 0})   "
              f"ratio {ours['us'] / bare['us']:.2f}×")
    # the machine's other work only ever adds time: each side's least is its cost
    bare_min, ours_min = min(b["us"] for b, _ in rows), min(o["us"] for _, o in rows)
    print(f"  least of {len(rows)}: bare {bare_min:.1f} µs, load generator {ours_min:.1f} µs, "
          f"ratio {ours_min / bare_min:.2f}×")
    if prof is not None:
        vs = a.vehicles * a.seconds * a.rounds
        stats = pstats.Stats(prof)
        # the emulated run is deterministic: the count of calls is an exact A/B measure where
        # the shared machine's timings are not
        calls = sum(nc for (_, nc, _, _, _) in stats.stats.values())
        python = sum(nc for (file, _, _), (_, nc, _, _, _) in stats.stats.items() if file != "~")
        print(f"\ncProfile, client side, per vehicle-second ({vs:.0f}): {calls / vs:.1f} calls, "
              f"{python / vs:.1f} of them Python functions")
        print_profile(stats, vs, "calls", a.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
