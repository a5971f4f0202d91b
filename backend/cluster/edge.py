"""The asyncio edges around the router core and the tunnel (docs/scaling.md §4).

`RouterEdge`: a public UDP socket (vehicles) and a tunnel socket (nodes); every datagram is one
`Router.route` or one `tunnel.unwrap`. `serve_behind_router`: a gateway node's
`QuicServer` on a tunnel socket, its heartbeats, and the CID hook for its protocols.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from . import tunnel
from .cids import CidLayout
from .relay import ISSUED, RETIRED, encode_cids
from .router import HEARTBEAT_S, Router

log = logging.getLogger(__name__)

# A node announces all its CIDs without the server id again every this many heartbeats (5 s):
# a router that restarted, or took over the address (VRRP), learns them within that; a moved
# connection on such a CID waits until then (QUIC retransmits meanwhile).
REANNOUNCE_BEATS = 10
# Announcements per tunnel datagram stay within one unfragmented packet on any LAN.
ANNOUNCE_BYTES = 1200


def _is_v6(transport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family == socket.AF_INET6


def now_us() -> int:
    """The tunnel counters' clock: wall-clock microseconds (docs/scaling.md §4)."""
    return time.time_ns() // 1000


class _Public(asyncio.DatagramProtocol):
    def __init__(self, edge: RouterEdge):
        self.edge = edge

    def datagram_received(self, data: bytes, addr) -> None:
        self.edge.from_vehicle(data, addr)


class _Tunnel(asyncio.DatagramProtocol):
    def __init__(self, edge: RouterEdge):
        self.edge = edge

    def datagram_received(self, data: bytes, addr) -> None:
        self.edge.from_node(data, addr)


class RouterEdge:
    """`python -m backend router`: forwards vehicles' datagrams to nodes and back, the tunnel
    authenticated with the cluster's `key`."""

    def __init__(self, key: bytes, router: Router | None = None):
        self.router = router or Router()
        self.loop = asyncio.get_running_loop()
        self.sealer = tunnel.Sealer(key, tunnel.ROUTER_SENDER, from_router=True)
        self.opener = tunnel.Opener(key, from_router=False, started_us=now_us())
        self.public = self.tunnel = None

    async def start(self, listen: tuple[str, int], tunnel_addr: tuple[str, int]) -> RouterEdge:
        self.public, _ = await self.loop.create_datagram_endpoint(
            lambda: _Public(self), local_addr=listen)
        self.tunnel, _ = await self.loop.create_datagram_endpoint(
            lambda: _Tunnel(self), local_addr=tunnel_addr)
        self._public_v6 = _is_v6(self.public)
        return self

    def ports(self) -> tuple[int, int]:
        return (self.public.get_extra_info("sockname")[1],
                self.tunnel.get_extra_info("sockname")[1])

    def from_vehicle(self, data: bytes, addr) -> None:
        node = self.router.route(data, self.loop.time())
        if node is not None:
            self.tunnel.sendto(self.sealer.data(addr[0], addr[1], data, now_us()), node)

    def from_node(self, data: bytes, addr) -> None:
        """A heartbeat (the node is alive at `addr`) or a datagram for a vehicle, relayed only
        from a live node's own address: nothing else leaves the public socket."""
        d = self.opener.open(data, now_us())
        if d is None:
            return
        now = self.loop.time()
        if d.kind == tunnel.HEARTBEAT:
            self.router.heartbeat(d.sender, addr, now)
        elif not self.router.is_node(d.sender, addr, now):
            self.opener.drop("unknown_peer")
        elif d.kind == tunnel.CIDS:
            self.router.announced(d.sender, d.payload, now)
        else:
            self.public.sendto(d.payload, (tunnel.socket_host(d.host, self._public_v6), d.port))

    def dropped(self) -> dict[str, int]:
        """Tunnel datagrams refused, by reason, and vehicles' datagrams no node could take."""
        return {**self.opener.dropped, "unroutable": self.router.stats["dropped"]}

    def close(self) -> None:
        for t in (self.public, self.tunnel):
            if t is not None:
                t.close()


class _NodeTransport(asyncio.DatagramTransport):
    """What the node's QuicServer writes to: every datagram goes back through the router."""

    def __init__(self, endpoint: _NodeEndpoint):
        super().__init__()
        self.endpoint = endpoint

    def sendto(self, data, addr=None) -> None:
        if self.endpoint.transport.is_closing():
            return  # the node is stopping: its connections' last packets go nowhere
        self.endpoint.transport.sendto(
            self.endpoint.sealer.data(addr[0], addr[1], data, now_us()), self.endpoint.router)

    def get_extra_info(self, name, default=None):
        return self.endpoint.transport.get_extra_info(name, default)

    def close(self) -> None:
        self.endpoint.close()

    def is_closing(self) -> bool:
        return self.endpoint.transport.is_closing()

    def abort(self) -> None:
        self.endpoint.close()


class RouterAnnouncer:
    """A node's `EdgeServer.relay` hook behind the router: the CIDs its connections issue
    without its server id (qh3's NEW_CONNECTION_ID ones) are announced to the router, which
    then routes them here (router.py). Sent before any datagram that offers them (the edge
    calls `flush` first), and all of them again every REANNOUNCE_S for a router that
    restarted or took over the address. Nothing is relayed between nodes (`forward`)."""

    def __init__(self, endpoint: _NodeEndpoint, layout: CidLayout):
        self.endpoint, self.layout = endpoint, layout
        self.live: set[bytes] = set()
        self.pending: list[tuple[int, bytes]] = []
        self.stats = {"announced": 0}

    def issued(self, cid: bytes) -> None:
        if self.layout.server_id(cid) != self.endpoint.server_id and cid not in self.live:
            self.live.add(cid)
            self.pending.append((ISSUED, cid))
            self.stats["announced"] += 1

    def retired(self, cid: bytes) -> None:
        if cid in self.live:
            self.live.discard(cid)
            self.pending.append((RETIRED, cid))

    def flush(self) -> None:
        if self.pending:
            changes, self.pending = self.pending, []
            self._send(changes)

    def reannounce(self) -> None:
        self._send([(ISSUED, cid) for cid in self.live])

    def _send(self, changes: list[tuple[int, bytes]]) -> None:
        ep = self.endpoint
        if ep.transport is None or ep.transport.is_closing():
            return
        for message in encode_cids(changes, ANNOUNCE_BYTES):
            ep.transport.sendto(ep.sealer.cids(message, now_us()), ep.router)

    def forward(self, data: bytes, cid: bytes, addr, now: float) -> bool:
        return False

    def close(self) -> None:
        pass


class _NodeEndpoint(asyncio.DatagramProtocol):
    """A node's tunnel socket: only its router's authenticated datagrams reach the QUIC server."""

    def __init__(self, server, server_id: int, router: tuple[str, int], key: bytes,
                 layout: CidLayout | None = None):
        self.server, self.server_id, self.router = server, server_id, router
        self.layout = layout or CidLayout()
        self.sealer = tunnel.Sealer(key, server_id, from_router=False)
        self.opener = tunnel.Opener(key, from_router=True, started_us=now_us())
        self.transport = None
        self._beat: asyncio.Task | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connection_made(_NodeTransport(self))
        if hasattr(self.server, "relay"):  # the gateway's EdgeServer: announce its CIDs
            self.server.relay = RouterAnnouncer(self, self.layout)
        self._beat = asyncio.get_running_loop().create_task(self._heartbeats())

    def datagram_received(self, data: bytes, addr) -> None:
        if addr[:2] != self.router:
            self.opener.drop("unknown_peer")
            return
        d = self.opener.open(data, now_us())
        if d is None:
            return
        if d.kind != tunnel.DATA:
            self.opener.drop("malformed")
            return
        self.server.datagram_received(d.payload, (d.host, d.port))

    async def _heartbeats(self) -> None:
        beats = 0
        while True:
            self.transport.sendto(self.sealer.heartbeat(now_us()), self.router)
            announcer = getattr(self.server, "relay", None)
            if isinstance(announcer, RouterAnnouncer) and beats % REANNOUNCE_BEATS == 0:
                announcer.reannounce()
            beats += 1
            await asyncio.sleep(HEARTBEAT_S)

    def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        self.transport.close()


async def _router_address(local_host: str, router: tuple[str, int]) -> tuple[str, int]:
    """The router's address as datagrams from it show on a socket bound to `local_host`
    (resolved, in that socket's family, canonical text): the node compares it per datagram."""
    loop = asyncio.get_running_loop()
    family = (await loop.getaddrinfo(local_host, 0, type=socket.SOCK_DGRAM))[0][0]
    infos = await loop.getaddrinfo(router[0], router[1], type=socket.SOCK_DGRAM)
    for fam, *_, sockaddr in infos:
        if fam == family:
            return sockaddr[0], router[1]
    for fam, *_, sockaddr in infos:
        if fam == socket.AF_INET and family == socket.AF_INET6:
            return "::ffff:" + sockaddr[0], router[1]
    raise OSError(f"the router {router[0]}:{router[1]} has no address a socket on "
                  f"{local_host} can reach")


async def serve_behind_router(lib, host: str, port: int, server_id: int, router: tuple[str, int],
                              key: bytes, server=None,
                              **server_kwargs) -> tuple[object, _NodeEndpoint]:
    """The QUIC library `lib`'s `serve()`, but on a tunnel socket talking to `router` (the
    create_protocol passed in must call `cids.issue_routable_cids`); returns the server and its
    endpoint (its `opener.dropped` counts what the tunnel refused). `server`: one already made
    (the gateway's `EdgeServer`) instead of the library's `QuicServer(**server_kwargs)`."""
    loop = asyncio.get_running_loop()
    if server is None:
        server = lib.QuicServer(**server_kwargs)
    resolved = await _router_address(host, router)
    _, endpoint = await loop.create_datagram_endpoint(
        lambda: _NodeEndpoint(server, server_id, resolved, key), local_addr=(host, port))
    return server, endpoint


# how often the router logs what it refused, when that changed
DROP_LOG_S = 60.0


async def run_router(listen: tuple[str, int], tunnel_addr: tuple[str, int], key: bytes,
                     nats=None, advertise: str = "") -> None:
    """`python -m backend router` until SIGTERM/SIGINT; with `nats` (`NatsSettings`), its
    health on NATS (healthy while it hears a live node) under the address `advertise`
    (docs/scaling.md §9)."""
    import signal

    from .discovery import publish_health
    from .health import Report

    edge = await RouterEdge(key).start(listen, tunnel_addr)
    tasks = [edge.loop.create_task(_log_drops(edge))]
    if nats is not None:
        addr = advertise or listen[0]

        def report() -> Report:
            return Report(f"router-{addr}", "router", addr,
                          bool(edge.router.live(edge.loop.time())))

        tasks.append(edge.loop.create_task(publish_health(nats, report)))
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        edge.loop.add_signal_handler(sig, stopping.set)
    public, tun = edge.ports()
    print(f"router ready: vehicles udp {listen[0]}:{public} nodes udp {tunnel_addr[0]}:{tun}",
          flush=True)
    try:
        await stopping.wait()
    finally:
        for task in tasks:
            task.cancel()
        edge.close()


async def _log_drops(edge: RouterEdge) -> None:
    last: dict[str, int] = {}
    while True:
        await asyncio.sleep(DROP_LOG_S)
        now = edge.dropped()
        if now != last:
            log.warning("router dropped (totals): %s",
                        ", ".join(f"{k} {v}" for k, v in now.items() if v))
            last = now
