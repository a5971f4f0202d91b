"""Several gateway processes on one UDP port: the kernel picks the process from the server id
in the destination connection ID (SO_REUSEPORT + SO_ATTACH_REUSEPORT_CBPF, docs/scaling.md).

Every process binds the same address with SO_REUSEPORT; the group's sockets are numbered in
the order they were bound. A classic BPF program, run by the kernel on each datagram's UDP
payload, returns the index of the socket that gets it:

- a short header (bit 0x80 clear) whose DCID (bytes 1–8) is of our `CidLayout`: its server id
  − `base` (so a migrated connection reaches the process that issued its CIDs, without a relay
  hop);
- a long header whose DCID (from byte 6) is of our layout (Handshake and 0-RTT packets after
  the server's first flight): the same;
- anything else (a client's first Initial, whose DCID the client chose; a foreign CID): a hash
  of four DCID bytes modulo the group size, the same for every retransmission of that Initial.

An index outside the group (a server id of another host) falls back to the kernel's own
hash. `select` is the program's specification in Python (used by the bench); the tests check
the kernel's choice against the CID layout directly.
"""

from __future__ import annotations

import ctypes
import socket
import struct

from .cids import CID_LENGTH, SERVER_ID_BYTES, CidLayout, issue_routable_cids, refuse_unroutable

# <linux/socket.h>: attach a classic BPF program that selects the socket of a reuseport group
SO_ATTACH_REUSEPORT_CBPF = 51
# A group of more processes than this has no use on one host; the bound keeps the program's
# modulo and the index checks within what a test can cover.
MAX_GROUP = 64

# classic BPF opcodes (<linux/filter.h>)
_LD_B_ABS, _LD_H_ABS, _LD_W_ABS = 0x30, 0x28, 0x20
_JEQ_K, _JGE_K, _JSET_K = 0x15, 0x35, 0x45
_SUB_K, _MOD_K = 0x14, 0x94
_RET_A = 0x16

# the layout every node of this deployment uses (backend/cluster/node.py)
DEFAULT_LAYOUT = CidLayout()
_LONG_HEADER = 0x80
_SHORT_DCID = 1  # a short header's DCID follows its first byte
_LONG_DCID = 6  # first byte, version (4), DCID length (1)


def program(group: int, base: int = 0, layout: CidLayout = DEFAULT_LAYOUT) -> list[tuple]:
    """The steering program for `group` sockets whose processes hold server ids base ..
    base + group − 1, as (code, jt, jf, k) instructions."""
    if not 1 <= group <= MAX_GROUP:
        raise ValueError(f"group must be within 1..{MAX_GROUP}")
    first = layout.encode(0)[0]

    def branch(dcid: int) -> list[tuple]:
        # 8 instructions: our CID → server id − base if within the group, else hash
        return [
            (_LD_B_ABS, 0, 0, dcid),
            (_JEQ_K, 0, 3, first),  # not our layout: to the hash
            (_LD_H_ABS, 0, 0, dcid + 1),
            (_SUB_K, 0, 0, base),
            (_JGE_K, 0, 2, group),  # below the group size (unsigned): return it
            (_LD_W_ABS, 0, 0, dcid),
            (_MOD_K, 0, 0, group),
            (_RET_A, 0, 0, 0),
        ]

    short, long = branch(_SHORT_DCID), branch(_LONG_DCID)
    return [(_LD_B_ABS, 0, 0, 0), (_JSET_K, len(short), 0, _LONG_HEADER), *short, *long]


def select(datagram: bytes, group: int, base: int = 0, layout: CidLayout = DEFAULT_LAYOUT) -> int:
    """What `program` returns for `datagram` (the index; ≥ group: the kernel's hash)."""
    long = bool(datagram[0] & _LONG_HEADER)
    at = _LONG_DCID if long else _SHORT_DCID
    cid = datagram[at:at + CID_LENGTH]
    if len(cid) == CID_LENGTH and layout.server_id(cid) is not None:
        sid = int.from_bytes(cid[1:1 + SERVER_ID_BYTES], "big")
        if 0 <= sid - base < group:
            return sid - base
    return int.from_bytes(datagram[at:at + 4], "big") % group


def encode(instructions: list[tuple]) -> bytes:
    """struct sock_filter[] for the kernel."""
    return b"".join(struct.pack("HBBI", *ins) for ins in instructions)


def attach(sock: socket.socket, group: int, base: int = 0,
           layout: CidLayout = DEFAULT_LAYOUT) -> None:
    """Attach the steering program to `sock`'s reuseport group (any one member will do; the
    group keeps the last program attached)."""
    code = encode(program(group, base, layout))
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to host:port with SO_REUSEPORT (a member of the port's group)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class ReuseportNode:
    """A gateway worker of `python -m backend --reuseport N` (backend/cluster/workers.py): its
    server id is its member index in the port's group, its socket the one the supervisor bound
    for it (inherited as file descriptor `fd`, the steering program already attached), and
    `channels` (member index → inherited fd of a socketpair end) its relay to each sibling of
    the `group` (relay.py). The gateway's `cluster` hook: `adopt` makes every connection's
    first CID carry the server id (all of them with aioquic), so the kernel brings its
    datagrams here; `serve` puts the gateway's UDP edge on the inherited socket and, with
    channels, relays the CIDs a library drew without the server id (qh3's)."""

    def __init__(self, server_id: int, fd: int, group: int = 0,
                 channels: dict[int, int] | None = None, layout: CidLayout = DEFAULT_LAYOUT):
        self.server_id = server_id
        self.fd = fd
        self.group = group
        self.channels = channels or {}
        self.layout = layout
        self.relay = None  # the RelayEdge, once serving with channels

    @property
    def relays_cids(self) -> bool:
        """Whether a CID without the server id still reaches its connection here (a library
        without routable NEW_CONNECTION_ID CIDs is safe: geostream.quic.gateway_library_name)."""
        return self.group > 1 and len(self.channels) == self.group - 1

    def adopt(self, lib, quic) -> None:
        issue_routable_cids(lib, quic, self.layout, self.server_id)

    async def serve(self, lib, host: str, port: int, server):
        from ..gateway_edge import UdpEdge
        from .relay import RelayBook
        from .relay_edge import RelayEdge

        if not self.relays_cids:
            refuse_unroutable(lib)
        sock = socket.socket(fileno=self.fd)
        sock.setblocking(False)
        UdpEdge(sock, server)
        if self.channels:
            socks = {m: socket.socket(fileno=fd) for m, fd in self.channels.items()}
            self.relay = server.relay = RelayEdge(RelayBook(self.server_id, self.group), socks,
                                                  server)
        return server
