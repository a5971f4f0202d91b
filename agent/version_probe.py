"""The liveness probe's datagram and the check of its answer (docs/protocol.md §8), pure.

The probe asks only "is the gateway's process alive and answering new packets?" (then silence
on the old connection means the gateway forgot it). A QUIC server answers a long-header packet
of a version it does not support, in a datagram of at least 1,200 bytes, with a Version
Negotiation packet that echoes the packet's connection IDs (RFC 8999 §6, RFC 9000 §6): no
state, no crypto, no handshake slot. The probe uses a reserved version (0x?a?a?a?a, RFC 9000
§15), which no server supports, and random connection IDs, so an answer that echoes them came
from someone who saw the probe; the agent and the load tester send the same datagram.

Why not the alternatives: a fresh handshake (the probe before revision 6) costs the gateway an
ECDHE and a signature and takes one of its handshake slots, and came when the gateway was
already behind; a stateless reset proves the same liveness but needs a reset token the agent
knows in advance and a server that can derive it, which the QUIC libraries behind the seam do
not let us set.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

# RFC 9000 §14.1: a datagram that may open a connection is at least this long, and a server
# answers only those (a reflected answer is then far smaller than what provoked it)
PROBE_BYTES = 1200
# the connection IDs' length: 2 × 64 random bits to guess for an off-path forger (and ≤ 20,
# the most a version-1 router reads, backend/cluster/router.py)
CID_BYTES = 8
# RFC 9000 §15: versions of the form 0x?a?a?a?a are reserved to exercise version negotiation
_RESERVED_MASK, _RESERVED_BITS = 0xF0F0F0F0, 0x0A0A0A0A
# RFC 8999 §5.1: the long header's form bit; RFC 9000 §17.2: the fixed bit, set so that a
# middlebox or router checking it (backend/cluster/router.py) passes the probe on
_LONG_FORM, _FIXED_BIT = 0x80, 0x40
# a Version Negotiation packet: first byte, version 0 (4), DCID length (1), SCID length (1)
_VN_MIN_BYTES = 7


def reserved_version(raw: int) -> int:
    """A reserved version (0x?a?a?a?a) from 32 random bits."""
    return (raw & _RESERVED_MASK) | _RESERVED_BITS


class VersionProbe:
    """One probe: its datagram (`datagram`, sent as often as the sender likes: every copy is
    answered alike) and the check of an answer (`answered_by`)."""

    __slots__ = ("dcid", "scid", "version", "datagram")

    def __init__(self, random: Callable[[int], bytes] = os.urandom):
        raw = random(1 + 4 + 2 * CID_BYTES)
        self.version = reserved_version(int.from_bytes(raw[1:5], "big"))
        self.dcid = raw[5:5 + CID_BYTES]
        self.scid = raw[5 + CID_BYTES:]
        head = (bytes([_LONG_FORM | _FIXED_BIT | (raw[0] & 0x3F)])
                + struct.pack("!I", self.version)
                + bytes([CID_BYTES]) + self.dcid + bytes([CID_BYTES]) + self.scid)
        self.datagram = head + bytes(PROBE_BYTES - len(head))

    def answered_by(self, data: bytes) -> bool:
        """Whether `data` is a Version Negotiation packet answering this probe: version 0,
        our connection IDs swapped (RFC 8999 §6), a whole list of versions that does not
        name the probe's own (RFC 9000 §6.2)."""
        if len(data) < _VN_MIN_BYTES or not data[0] & _LONG_FORM or data[1:5] != b"\0\0\0\0":
            return False
        at = 5
        dcid_len = data[at]
        dcid = data[at + 1:at + 1 + dcid_len]
        at += 1 + dcid_len
        if len(dcid) != dcid_len or at >= len(data):
            return False
        scid_len = data[at]
        scid = data[at + 1:at + 1 + scid_len]
        at += 1 + scid_len
        if len(scid) != scid_len or dcid != self.scid or scid != self.dcid:
            return False
        versions = data[at:]
        if not versions or len(versions) % 4:
            return False
        return all(v != self.version for (v,) in struct.iter_unpack("!I", versions))
