"""A gateway node's cluster settings: its server id, its router, the CID layout."""

from __future__ import annotations

from dataclasses import dataclass

from .cids import CidLayout, issue_routable_cids


def parse_addr(text: str) -> tuple[str, int]:
    """HOST:PORT or [V6]:PORT."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ClusterNode:
    server_id: int
    router: tuple[str, int]
    layout: CidLayout = CidLayout()

    def adopt(self, quic) -> None:
        """Called by each new server-side connection: CIDs with this node's server id."""
        issue_routable_cids(quic, self.layout, self.server_id)

    async def serve(self, host: str, port: int, **server_kwargs):
        from .edge import serve_behind_router

        return await serve_behind_router(host, port, self.server_id, self.router,
                                         **server_kwargs)
