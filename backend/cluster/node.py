"""A gateway node's cluster settings: its server id, its router, the CID layout."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from .cids import CidLayout, issue_routable_cids

log = logging.getLogger(__name__)


def parse_addr(text: str) -> tuple[str, int]:
    """HOST:PORT or [V6]:PORT."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def check_tunnel_host(host: str, what: str) -> None:
    """The tunnel's sockets (the router's `--tunnel`, a node's `quic_host`) are bound to one
    address on the cluster's private network, never the wildcard: ValueError for `::`,
    `0.0.0.0` or nothing; a warning for a public address (authenticated, but exposed)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        if not host:
            raise ValueError(f"{what}: an address on the cluster's private network is "
                             "needed") from None
        return  # a name: the operator's own
    if ip.is_unspecified:
        raise ValueError(f"{what} {host!r} listens on every interface: give the address on "
                         "the cluster's private network (docs/scaling.md §4)")
    if ip.is_global:
        log.warning("%s %s is a public address: the tunnel is authenticated, but it belongs "
                    "on the cluster's private network", what, host)


@dataclass(eq=False)
class ClusterNode:
    """`key`: the cluster's tunnel key (tunnel.load_key); `endpoint`, once serving, holds the
    tunnel's counters (`endpoint.opener.dropped`)."""

    server_id: int
    router: tuple[str, int]
    key: bytes = field(repr=False)
    layout: CidLayout = CidLayout()
    endpoint: object = field(default=None, init=False, repr=False)
    # a CID its QUIC library issues without the server id (qh3's) is announced to the router,
    # which routes it here (edge.py RouterAnnouncer): safe for either library
    relays_cids = True

    def adopt(self, lib, quic) -> None:
        """Called by each new server-side connection (of QUIC library `lib`): CIDs with this
        node's server id."""
        issue_routable_cids(lib, quic, self.layout, self.server_id)

    async def serve(self, lib, host: str, port: int, **server_kwargs):
        from .edge import serve_behind_router

        check_tunnel_host(host, "a gateway node's quic_host")
        server, self.endpoint = await serve_behind_router(
            lib, host, port, self.server_id, self.router, self.key, **server_kwargs)
        return server
