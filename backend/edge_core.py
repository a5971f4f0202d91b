"""Sans-IO parts of the gateway's UDP edge (backend/gateway_edge.py): one timer structure for
every connection, and the QUIC invariant header fields the edge routes by.

`Deadlines` replaces one asyncio TimerHandle per connection (each re-armed on every transmit:
a `call_at` and a `cancel`, and a heap entry in the event loop per change) by one heap for all
connections and one loop timer for its earliest entry. `route_header` reads only what RFC 8999
(QUIC's version-independent invariants) fixes: the form bit, the version, the connection IDs,
so the edge can hand a datagram to its connection without the library's full header parse.
"""

from __future__ import annotations

import heapq
import itertools
import os
import struct
from collections.abc import Hashable
from typing import NamedTuple

# The heap keeps a superseded deadline until it reaches the top (deleting from the middle of a
# heap is O(n)); once superseded entries outnumber live ones by this much plus the live count,
# it is rebuilt from the live ones, so its size stays within 2× the connections plus this slack.
COMPACT_SLACK = 1024


class Deadlines:
    """The next deadline of many owners (connections) in one heap; setting an owner's deadline
    replaces its previous one. Pure: the caller passes `now` and arms one timer for
    `earliest()`."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._at: dict[Hashable, float] = {}
        self._seq = itertools.count()  # ties: first set, first due; owners never compared

    def __len__(self) -> int:
        return len(self._at)

    def at(self, owner: Hashable) -> float | None:
        """`owner`'s deadline, None if it has none."""
        return self._at.get(owner)

    def set(self, owner: Hashable, when: float | None) -> None:
        """`owner` is due at `when` (None: never), whatever it was due at before."""
        if when is None:
            self._at.pop(owner, None)
            return
        if self._at.get(owner) == when:
            return
        self._at[owner] = when
        heapq.heappush(self._heap, (when, next(self._seq), owner))
        if len(self._heap) > 2 * len(self._at) + COMPACT_SLACK:
            self._compact()

    def set_earlier(self, owner: Hashable, when: float) -> None:
        """`owner` is due at `when` unless it is due earlier already."""
        current = self._at.get(owner)
        if current is None or when < current:
            self.set(owner, when)

    def earliest(self) -> float | None:
        """The earliest live deadline (superseded entries on top are dropped on the way)."""
        heap, at = self._heap, self._at
        while heap:
            when, _, owner = heap[0]
            if at.get(owner) == when:
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        """The owners due at `now` (each once, earliest first); their deadlines are cleared."""
        heap, at = self._heap, self._at
        due = []
        while heap and heap[0][0] <= now:
            when, _, owner = heapq.heappop(heap)
            if at.get(owner) == when:
                del at[owner]
                due.append(owner)
        return due

    def _compact(self) -> None:
        self._heap = [(when, next(self._seq), owner) for owner, when in self._at.items()]
        heapq.heapify(self._heap)


class RouteHeader(NamedTuple):
    """What the edge needs of a datagram's first packet to route it."""

    long: bool  # long header (handshake packets, Initial, 0-RTT, version negotiation)
    version: int | None  # None for a short header
    destination_cid: bytes
    source_cid: bytes  # empty for a short header
    initial: bool  # a version-1 Initial packet: may open a connection


# RFC 9000 §17.2: version 1's long-header packet type Initial, bits 4–5 of the first byte
_INITIAL_TYPE = 0
QUIC_V1 = 0x00000001
# RFC 9000 §17.2: connection IDs in version 1 are at most 20 bytes; RFC 8999 allows 255
MAX_CID_LENGTH = 255


def route_header(data: bytes, short_cid_length: int) -> RouteHeader | None:
    """The invariant header fields of `data`'s first packet (RFC 8999 §5); None when it is
    too short to hold them. A short header's DCID length is the server's own
    (`short_cid_length`): the peer does not send it."""
    if not data:
        return None
    first = data[0]
    if not first & 0x80:
        end = 1 + short_cid_length
        if len(data) < end:
            return None
        return RouteHeader(False, None, data[1:end], b"", False)
    if len(data) < 7:
        return None
    version = int.from_bytes(data[1:5], "big")
    dcid_len = data[5]
    scid_at = 6 + dcid_len
    if len(data) < scid_at + 1:
        return None
    scid_len = data[scid_at]
    if len(data) < scid_at + 1 + scid_len:
        return None
    initial = version == QUIC_V1 and (first & 0x30) >> 4 == _INITIAL_TYPE
    return RouteHeader(True, version, data[6:scid_at], data[scid_at + 1:scid_at + 1 + scid_len],
                       initial)


def version_negotiation(header: RouteHeader, versions: list[int]) -> bytes:
    """A Version Negotiation packet answering `header` (RFC 8999 §6): its connection IDs
    swapped, the versions this server supports."""
    first = 0x80 | (os.urandom(1)[0] & 0x7F)
    return (bytes([first]) + b"\x00\x00\x00\x00"
            + bytes([len(header.source_cid)]) + header.source_cid
            + bytes([len(header.destination_cid)]) + header.destination_cid
            + b"".join(struct.pack("!I", v) for v in versions))
