"""Connection IDs in the QUIC-LB plaintext layout, and the hook that makes aioquic issue them.

    byte 0: config (3 bits) | CID length − 1 (5 bits); bytes 1–2: server id; bytes 3–7: nonce

aioquic draws a server's connection IDs with `os.urandom` in two places and offers no hook
(docs/scaling.md §3): `QuicConnection.__init__` (the first CID, also the initial source CID of
the transport parameters) and `_replenish_connection_ids` (those sent in NEW_CONNECTION_ID).
`issue_routable_cids` rewrites the first and wraps the second on one connection instance, before
`QuicServer` registers `connection.host_cid`. tests/system/cluster/test_cids.py pins those
behaviours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# aioquic's default `connection_id_length`; the router reads this many bytes of a short header.
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


def issue_routable_cids(quic, layout: CidLayout, server_id: int) -> None:
    """Make the server-side `QuicConnection` `quic` issue only CIDs carrying `server_id`.
    Call it from the protocol's constructor (before aioquic registers `quic.host_cid`)."""
    if quic._configuration.connection_id_length != CID_LENGTH:
        raise ValueError(f"the layout needs connection_id_length {CID_LENGTH}")
    first = quic._host_cids[0]
    first.cid = layout.encode(server_id)
    quic.host_cid = first.cid
    quic._local_initial_source_connection_id = first.cid
    replenish = quic._replenish_connection_ids

    def routable_replenish() -> None:
        known = len(quic._host_cids)
        replenish()
        for connection_id in quic._host_cids[known:]:
            connection_id.cid = layout.encode(server_id)

    quic._replenish_connection_ids = routable_replenish
