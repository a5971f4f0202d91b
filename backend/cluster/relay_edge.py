"""A `--reuseport` worker's channels to its siblings: the sockets and the event-loop side of
relay.py's `RelayBook` (what is relayed, and why, is there).

Each pair of workers shares one AF_UNIX datagram socketpair made by the supervisor
(workers.py), so a message's channel names its sender and no other process can write to it
(a path or an abstract name could be written to by any local user). A connected pair is
bounded by the sender's send buffer, not by `net.unix.max_dgram_qlen` (10 here), which stops
an unconnected unix datagram socket after ten unread messages.

The gateway's `EdgeServer` calls `issued`/`retired` for every CID it registers and retires,
`flush` before it sends datagrams, and `forward` for a short-header datagram of a CID it does
not know; a relayed datagram is handed to its `receive` with the vehicle's address, and the
answer leaves from the shared port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

from .relay import (
    KIND_CIDS,
    KIND_DATAGRAM,
    KIND_HELLO,
    RelayBook,
    decode_datagram,
    encode_datagram,
)

log = logging.getLogger(__name__)

# Messages read per readable channel before the loop runs other callbacks (as the UDP edge's
# MAX_DATAGRAMS_PER_WAKEUP): one sibling's burst cannot starve the rest.
MAX_MESSAGES_PER_WAKEUP = 64
# Room in each channel's send buffer (capped by net.core.wmem_max): a second of relayed
# datagrams at 10,000 vehicles × 1 Hz when half of them moved is ~5,000 × ~1.3 KB of skb.
CHANNEL_BUFFER_BYTES = 4 << 20
# Announcements kept per sibling while its channel is full, then dropped (logged): a CID
# announced late only costs its first datagrams (dropped as unroutable, resent by QUIC).
UNSENT_MAX = 4096
MAX_MESSAGE = 65536


class RelayEdge:
    """`channels`: sibling member index → its connected socket; `server`: the worker's
    `EdgeServer` (its `receive`, `flush_soon`, `stats`)."""

    def __init__(self, book: RelayBook, channels: dict[int, socket.socket], server):
        self.book = book
        self.channels = channels
        self.server = server
        self._loop = asyncio.get_running_loop()
        self._delivering = False  # a relayed datagram is never relayed again
        self._unsent: dict[int, list[bytes]] = {}
        self.stats = server.stats  # relay_out, relay_in, relay_unknown, relay_dropped …
        for member, sock in channels.items():
            sock.setblocking(False)
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, CHANNEL_BUFFER_BYTES)
                except OSError:  # a smaller buffer only relays less in a burst
                    pass
            self._loop.add_reader(sock.fileno(), self._readable, member)
        for member in channels:  # forget what an earlier incarnation of ours announced
            self._send(member, bytes([KIND_HELLO]))

    # --- the edge's hooks --------------------------------------------------------------

    def issued(self, cid: bytes) -> None:
        self.book.issued(cid)

    def retired(self, cid: bytes) -> None:
        self.book.retired(cid)

    def flush(self) -> None:
        """Send the announcements of CIDs issued since the last flush (before any datagram
        offering them leaves: edge calls this first)."""
        if self.book.pending or self._unsent:
            for member, messages in self.book.take_pending().items():
                self._unsent.setdefault(member, []).extend(messages)
            for member in list(self._unsent):
                queue = self._unsent.pop(member)
                for i, message in enumerate(queue):
                    if not self._send(member, message, keep=False):
                        self._keep(member, queue[i:])
                        break

    def forward(self, data: bytes, cid: bytes, addr, now: float) -> bool:
        """Relay `data` (to CID `cid`, from `addr`) to the sibling that owns `cid`; False if
        none does (after reading what the siblings sent: an announcement precedes the first
        datagram to its CID) or `data` was relayed here already."""
        if self._delivering:
            return False
        owner = self.book.owner(cid)
        if owner is None:
            self.drain()
            owner = self.book.owner(cid)
            if owner is None:
                return False
        if self._send(owner, encode_datagram(data, addr), keep=False):
            self.stats["relay_out"] += 1
        else:
            self.stats["relay_dropped"] += 1  # QUIC resends what is lost
        return True

    def drain(self) -> None:
        """Read every channel now (a CID just missed may be announced there)."""
        for member in self.channels:
            self._readable(member, flush=False)

    def close(self) -> None:
        """Stop reading; the totals go to stderr whatever the log level (a process line like
        "backend ready": the load tester reads them from the worker's log)."""
        for sock in self.channels.values():
            self._loop.remove_reader(sock.fileno())
        print(f"cid relay of worker {self.book.member}: {self.summary()}", file=sys.stderr,
              flush=True)

    def summary(self) -> str:
        s, b = self.stats, self.book
        return (f"relayed_out={s['relay_out']} relayed_in={s['relay_in']} "
                f"dropped={s['relay_dropped']} announced={b.stats['announced']} "
                f"held={len(b.relayed)} refused={b.stats['refused']}")

    # --- channels ----------------------------------------------------------------------

    def _readable(self, member: int, flush: bool = True) -> None:
        sock = self.channels[member]
        for _ in range(MAX_MESSAGES_PER_WAKEUP):
            try:
                message = sock.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("relay channel %d: %s", member, exc)
                break
            if message:
                self._handle(member, message)
        if flush:
            self.server.flush_soon()

    def _handle(self, member: int, message: bytes) -> None:
        kind = message[0]
        if kind == KIND_DATAGRAM:
            try:
                data, addr = decode_datagram(message)
            except ValueError:
                self.book.stats["malformed"] += 1
                return
            self.stats["relay_in"] += 1
            self._delivering = True
            try:
                self.server.receive(data, addr, self._loop.time())
            finally:
                self._delivering = False
        elif kind == KIND_CIDS:
            self.book.received_cids(member, message)
        elif kind == KIND_HELLO:
            for reply in self.book.hello_from(member):
                self._send(member, reply)
        else:
            self.book.stats["malformed"] += 1

    def _send(self, member: int, message: bytes, keep: bool = True) -> bool:
        try:
            self.channels[member].send(message)
            return True
        except (BlockingIOError, InterruptedError):
            if keep:
                self._keep(member, [message])
            return False
        except OSError as exc:  # the sibling's end is gone: it is restarting
            log.debug("relay channel %d: %s", member, exc)
            return False

    def _keep(self, member: int, messages: list[bytes]) -> None:
        queue = self._unsent.setdefault(member, [])
        room = UNSENT_MAX - len(queue)
        if len(messages) > room:
            log.warning("relay channel %d full: %d announcements dropped", member,
                        len(messages) - max(0, room))
        queue.extend(messages[:max(0, room)])
