"""Connection IDs the kernel cannot steer, sans-IO: which sibling relays them to their owner
(docs/scaling.md §4, "A library that draws its own CIDs").

`--reuseport` workers (workers.py) rely on the kernel bringing every datagram to the process
whose server id its destination CID carries (reuseport.py). qh3's native core draws the CIDs
it offers in NEW_CONNECTION_ID at random, so after a vehicle moves onto one, the kernel's
steering program hashes it to some member, not necessarily the owner. The owner knows each
such CID (the library reports it: `ConnectionIdIssued`) and which member the kernel will send
it to (`reuseport.select`, the program's specification), so it tells that one member, and
only when it is not itself (one in N for N workers); that member hands the CID's datagrams to
the owner, which answers from the shared port. One hop, for the datagrams of moved
connections only; CIDs that carry the server id (all of aioquic's) never take it.

Announcements travel over the same channel as relayed datagrams (a socketpair per pair of
workers, FIFO), and the owner sends one before any datagram that offers its CID leaves
(`flush` before the edge sends), so a member that reads a datagram with a CID it does not
know has the announcement in its channel already: it reads its channels first, then decides.

Messages (one per datagram on a channel; the channel tells the sender):

    CIDS:     kind 1 | (op: 1 issued / 0 retired, CID length, CID) ...
    HELLO:    kind 2                         the sender (re)started: forget its CIDs, and
                                             announce to it again the CIDs it is to relay
    DATAGRAM: kind 3 | family (4/6) | address (4/16) | port (2) | scope id (4, IPv6) | datagram
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

from .reuseport import select

KIND_CIDS, KIND_HELLO, KIND_DATAGRAM = 1, 2, 3
ISSUED, RETIRED = 1, 0
# A CIDS message stays below this many bytes (many announcements go in one datagram: a
# handshake burst's CIDs take a few sends, not one each).
MAX_MESSAGE_BYTES = 16384
# Foreign CIDs one member relays. qh3 offers at most 7 spare CIDs per connection (its local
# limit of 8); 16 workers' worth of 16,384 connections each fit. Past it, a new announcement
# is refused (counted, logged by the edge): that CID's datagrams are dropped as unroutable
# and its connection ends by idle timeout, as before relaying existed.
MAX_RELAYED_CIDS = 1 << 20
# RFC 9000 §17.2: a connection ID is at most 20 bytes.
MAX_CID_LENGTH = 20
_SHORT_HEADER = 0x40  # fixed bit set, long-header bit clear


def steered_to(cid: bytes, group: int) -> int:
    """The member the kernel's steering program gives a short-header datagram to `cid`."""
    return select(bytes([_SHORT_HEADER]) + cid, group)


def encode_cids(changes: Iterable[tuple[int, bytes]],
                max_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """CIDS messages for (op, cid) changes, each under `max_bytes`."""
    out, cur = [], bytearray([KIND_CIDS])
    for op, cid in changes:
        entry = bytes([op, len(cid)]) + cid
        if len(cur) + len(entry) > max_bytes:
            out.append(bytes(cur))
            cur = bytearray([KIND_CIDS])
        cur += entry
    if len(cur) > 1:
        out.append(bytes(cur))
    return out


def decode_cids(message: bytes) -> list[tuple[int, bytes]]:
    """The (op, cid) changes of a CIDS message; ValueError if malformed."""
    changes, at = [], 1
    while at < len(message):
        if at + 2 > len(message):
            raise ValueError("truncated CID entry")
        op, n = message[at], message[at + 1]
        if op not in (ISSUED, RETIRED) or not 0 < n <= MAX_CID_LENGTH \
                or at + 2 + n > len(message):
            raise ValueError("bad CID entry")
        changes.append((op, message[at + 2:at + 2 + n]))
        at += 2 + n
    return changes


def encode_datagram(data: bytes, addr: tuple) -> bytes:
    """A DATAGRAM message: `data` as it came from `addr` (a socket's address tuple)."""
    host, port = addr[0], addr[1]
    if ":" in host:
        scope = addr[3] if len(addr) > 3 else 0
        return (bytes([KIND_DATAGRAM, 6]) + socket.inet_pton(socket.AF_INET6, host)
                + struct.pack("!HI", port, scope) + data)
    return bytes([KIND_DATAGRAM, 4]) + socket.inet_pton(socket.AF_INET, host) \
        + struct.pack("!H", port) + data


def decode_datagram(message: bytes) -> tuple[bytes, tuple]:
    """(datagram, address tuple as the socket gives it); ValueError if malformed."""
    if len(message) < 2:
        raise ValueError("truncated")
    if message[1] == 4 and len(message) >= 8:
        host = socket.inet_ntop(socket.AF_INET, message[2:6])
        (port,) = struct.unpack_from("!H", message, 6)
        return message[8:], (host, port)
    if message[1] == 6 and len(message) >= 24:
        host = socket.inet_ntop(socket.AF_INET6, message[2:18])
        port, scope = struct.unpack_from("!HI", message, 18)
        return message[24:], (host, port, 0, scope)
    raise ValueError("bad address")


class RelayBook:
    """One member's two tables: the foreign CIDs it relays (CID → owner), and the CIDs of its
    own connections it announced to a sibling (CID → that sibling), with the outgoing
    announcements not yet sent. `member` is this worker's index, `group` the workers' count."""

    def __init__(self, member: int, group: int, max_relayed: int = MAX_RELAYED_CIDS):
        self.member, self.group, self.max_relayed = member, group, max_relayed
        self.relayed: dict[bytes, int] = {}
        self.announced: dict[bytes, int] = {}
        self.pending: dict[int, list[tuple[int, bytes]]] = {}
        self.stats = {"announced": 0, "refused": 0, "malformed": 0}

    # --- own connections ---------------------------------------------------------------

    def issued(self, cid: bytes) -> None:
        """A connection here issued `cid`: announce it to the member the kernel steers it to,
        unless that is this one."""
        target = steered_to(cid, self.group)
        if target == self.member or cid in self.announced:
            return
        self.announced[cid] = target
        self.pending.setdefault(target, []).append((ISSUED, cid))
        self.stats["announced"] += 1

    def retired(self, cid: bytes) -> None:
        """`cid` no longer reaches a connection here (retired, or its connection ended)."""
        target = self.announced.pop(cid, None)
        if target is not None:
            self.pending.setdefault(target, []).append((RETIRED, cid))

    def take_pending(self) -> dict[int, list[bytes]]:
        """The announcements to send now: member → messages."""
        pending, self.pending = self.pending, {}
        return {m: encode_cids(changes) for m, changes in pending.items()}

    def hello_from(self, sibling: int) -> list[bytes]:
        """`sibling` (re)started: its connections are gone (forget what it announced), and it
        relays nothing yet (the messages announcing ours that it relays, to send it)."""
        for cid in [c for c, owner in self.relayed.items() if owner == sibling]:
            del self.relayed[cid]
        return encode_cids((ISSUED, c) for c, m in self.announced.items() if m == sibling)

    # --- siblings' connections ---------------------------------------------------------

    def received_cids(self, sibling: int, message: bytes) -> None:
        """A sibling's CIDS message."""
        try:
            changes = decode_cids(message)
        except ValueError:
            self.stats["malformed"] += 1
            return
        relayed = self.relayed
        for op, cid in changes:
            if op == ISSUED:
                if cid not in relayed and len(relayed) >= self.max_relayed:
                    self.stats["refused"] += 1
                    continue
                relayed[cid] = sibling
            elif relayed.get(cid) == sibling:
                del relayed[cid]

    def owner(self, cid: bytes) -> int | None:
        """The sibling a datagram to `cid` is relayed to, or None (not a sibling's)."""
        return self.relayed.get(cid)
