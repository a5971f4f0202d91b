"""The asyncio edges around the router core and the tunnel (docs/scaling.md §4).

`RouterEdge`: a public UDP socket (vehicles) and a tunnel socket (nodes); every datagram is one
`Router.route` or one `tunnel.unwrap`. `serve_behind_router`: a gateway node's aioquic
`QuicServer` on a tunnel socket, its heartbeats, and the CID hook for its protocols.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from aioquic.asyncio.server import QuicServer

from . import tunnel
from .router import HEARTBEAT_S, Router

log = logging.getLogger(__name__)


def _is_v6(transport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family == socket.AF_INET6


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
    """`python -m backend router`: forwards vehicles' datagrams to nodes and back."""

    def __init__(self, router: Router | None = None):
        self.router = router or Router()
        self.loop = asyncio.get_running_loop()
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
            self.tunnel.sendto(tunnel.wrap(addr[0], addr[1], data), node)

    def from_node(self, data: bytes, addr) -> None:
        sid = tunnel.heartbeat_id(data)
        if sid is not None:
            self.router.heartbeat(sid, addr, self.loop.time())
            return
        try:
            host, port, payload = tunnel.unwrap(data)
        except ValueError:
            return
        self.public.sendto(payload, (tunnel.socket_host(host, self._public_v6), port))

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
        self.endpoint.transport.sendto(tunnel.wrap(addr[0], addr[1], data),
                                       self.endpoint.router)

    def get_extra_info(self, name, default=None):
        return self.endpoint.transport.get_extra_info(name, default)

    def close(self) -> None:
        self.endpoint.close()

    def is_closing(self) -> bool:
        return self.endpoint.transport.is_closing()

    def abort(self) -> None:
        self.endpoint.close()


class _NodeEndpoint(asyncio.DatagramProtocol):
    def __init__(self, server: QuicServer, server_id: int, router: tuple[str, int]):
        self.server, self.server_id, self.router = server, server_id, router
        self.transport = None
        self._beat: asyncio.Task | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connection_made(_NodeTransport(self))
        self._beat = asyncio.get_running_loop().create_task(self._heartbeats())

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            host, port, payload = tunnel.unwrap(data)
        except ValueError:
            return
        self.server.datagram_received(payload, (host, port))

    async def _heartbeats(self) -> None:
        beat = tunnel.heartbeat(self.server_id)
        while True:
            self.transport.sendto(beat, self.router)
            await asyncio.sleep(HEARTBEAT_S)

    def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        self.transport.close()


async def serve_behind_router(host: str, port: int, server_id: int, router: tuple[str, int],
                              **server_kwargs) -> QuicServer:
    """aioquic's `serve()`, but on a tunnel socket talking to `router` (the create_protocol
    passed in must call `cids.issue_routable_cids`)."""
    loop = asyncio.get_running_loop()
    server = QuicServer(**server_kwargs)
    await loop.create_datagram_endpoint(
        lambda: _NodeEndpoint(server, server_id, router), local_addr=(host, port))
    return server


async def run_router(listen: tuple[str, int], tunnel_addr: tuple[str, int],
                     nats_url: str = "", advertise: str = "") -> None:
    """`python -m backend router` until SIGTERM/SIGINT; with `nats_url`, its health on NATS
    (healthy while it hears a live node) under the address `advertise` (docs/scaling.md §9)."""
    import signal

    from .discovery import publish_health
    from .health import Report

    edge = await RouterEdge().start(listen, tunnel_addr)
    health = None
    if nats_url:
        addr = advertise or listen[0]

        def report() -> Report:
            return Report(f"router-{addr}", "router", addr,
                          bool(edge.router.live(edge.loop.time())))

        health = edge.loop.create_task(publish_health(nats_url, report))
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        edge.loop.add_signal_handler(sig, stopping.set)
    public, tun = edge.ports()
    print(f"router ready: vehicles udp {listen[0]}:{public} nodes udp {tunnel_addr[0]}:{tun}",
          flush=True)
    try:
        await stopping.wait()
    finally:
        if health is not None:
            health.cancel()
        edge.close()
