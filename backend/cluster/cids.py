"""Connection IDs in the QUIC-LB plaintext layout, and the hook that makes a connection issue them.

    byte 0: config (3 bits) | CID length − 1 (5 bits); bytes 1–2: server id; bytes 3–7: nonce

Neither QUIC library offers a hook for the CIDs a server issues (docs/scaling.md §3): the seam's
`issue_routable_cids` (geostream/quic/) makes one connection draw them from `CidLayout.encode`,
before `QuicServer` registers `connection.host_cid`. With aioquic every CID carries the server
id; qh3's native core draws the ones it sends in NEW_CONNECTION_ID itself (its adapter's
`ROUTABLE_NEW_CIDS` is False). tests/system/cluster/test_cids.py pins those behaviours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# both libraries' default `connection_id_length`; the router reads this many bytes of a short
# header.
CID_LENGTH = 8
SERVER_ID_BYTES = 2
# the draft reserves config 0b111 for CIDs a load balancer cannot route (fall back to hashing)
UNROUTABLE_CONFIG = 7
MAX_SERVER_ID = (1 << (8 * SERVER_ID_BYTES)) - 1
_NONCE_BYTES = CID_LENGTH - 1 - SERVER_ID_BYTES


@dataclass(frozen=True)
class CidLayout:
    """One plaintext QUIC-LB configuration: its config id (0–6)."""

    config: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.config < UNROUTABLE_CONFIG:
            raise ValueError("config must be within 0..6")

    def encode(self, server_id: int, nonce: bytes | None = None) -> bytes:
        if not 0 <= server_id <= MAX_SERVER_ID:
            raise ValueError(f"server id must be within 0..{MAX_SERVER_ID}")
        nonce = os.urandom(_NONCE_BYTES) if nonce is None else nonce
        if len(nonce) != _NONCE_BYTES:
            raise ValueError(f"nonce must be {_NONCE_BYTES} bytes")
        first = (self.config << 5) | (CID_LENGTH - 1)
        return bytes([first]) + server_id.to_bytes(SERVER_ID_BYTES, "big") + nonce

    def server_id(self, cid: bytes) -> int | None:
        """The server id a CID of this layout carries, or None (another layout, random)."""
        if len(cid) != CID_LENGTH or cid[0] != (self.config << 5) | (CID_LENGTH - 1):
            return None
        return int.from_bytes(cid[1:1 + SERVER_ID_BYTES], "big")


def issue_routable_cids(lib, quic, layout: CidLayout, server_id: int) -> None:
    """Make the server-side connection `quic` of QUIC library `lib` issue CIDs carrying
    `server_id`. Call it from the protocol's constructor (before the server registers
    `quic.host_cid`)."""
    if quic._configuration.connection_id_length != CID_LENGTH:
        raise ValueError(f"the layout needs connection_id_length {CID_LENGTH}")
    lib.issue_routable_cids(quic, lambda: layout.encode(server_id))


def refuse_unroutable(lib) -> None:
    """ValueError when QUIC library `lib` cannot put the server id into every CID it issues
    (qh3: only the first, docs/link.md, QUIC library): a connection that migrates onto another
    one would reach another process and be lost there. A cluster node or `--reuseport` worker
    calls it before serving; its configuration already refuses such a library
    (geostream.quic.gateway_library_name), this catches a library handed in otherwise."""
    if not lib.ROUTABLE_NEW_CIDS:
        raise ValueError(f"QUIC library {lib.NAME} issues connection IDs that are not routable "
                         f"(without the server id after the first): a vehicle that migrates "
                         f"onto one loses its connection where CIDs are routed; use "
                         f"quic_library = \"aioquic\" on cluster nodes and --reuseport workers")
