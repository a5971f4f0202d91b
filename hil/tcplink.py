"""TCP counterpart of hil/linkemu.py: a user-space relay with delay and NAT rebinding.

    client ──tcp──▶ [listen socket] TcpLinkEmulator [upstream connection] ──tcp──▶ server

`TcpLinkModel` is the sans-IO core. It reuses `LinkModel` for what the two relays share (one-way
delay per direction, jitter without reordering, byte counts) and adds what is particular to TCP:

- the relay's kernel accepts at once, so the relay waits one round trip (the SYN / SYN-ACK a real
  path costs) before it connects upstream;
- `rebind()` forgets every NAT mapping, as a carrier NAT does when it reassigns the port. The
  client is not told. Its next segment reaches a server that does not know the new 4-tuple, and
  the server's RST comes back: the relay resets the client side (SO_LINGER 0) one round trip
  after that segment. What the server sends on a forgotten mapping is lost, and the server's
  side of the old connection stays open until the server notices on its own.

A stream cannot lose bytes, so the model refuses loss and blackouts (use the UDP emulator for
those). `cut()` is the other way a path ends: the relay drops every connection at once (both
sides reset), as when the vehicle's address disappears and the client is told.

    python -m hil.tcplink --listen 127.0.0.1:8884 --target 127.0.0.1:8883 --delay-ms 25
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from dataclasses import dataclass

from .linkemu import DOWN, UP, LinkModel, LinkStats, hostport, relay_main

FORWARD = "forward"  # deliver the bytes at `at`
RESET = "reset"  # the mapping is gone: reset the client side at `at`
DROP = "drop"  # the mapping is gone: the bytes are lost


@dataclass(frozen=True)
class Decision:
    action: str
    at: float | None = None


class TcpLinkModel:
    """Decisions of the TCP relay, given the time; connections carry the mapping generation
    they were opened in, and `rebind()` starts a new one."""

    def __init__(self, delay_s: float = 0.0, jitter_s: float = 0.0, seed: int = 1):
        self.link = LinkModel(delay_s=delay_s, jitter_s=jitter_s, seed=seed)
        self.generation = 0

    @property
    def stats(self) -> LinkStats:
        return self.link.stats

    @property
    def rtt_s(self) -> float:
        return 2 * self.link.delay_s

    def connect_delay(self) -> float:
        """How long the relay holds an accepted connection before it connects upstream."""
        return self.rtt_s

    def rebind(self) -> None:
        self.generation += 1
        self.link.stats.rebinds += 1

    def mapped(self, generation: int) -> bool:
        return generation == self.generation

    def from_client(self, now: float, generation: int, size: int) -> Decision:
        """Bytes (or, with size 0, the end of the stream) the client sent at `now`."""
        if not self.mapped(generation):
            # the segment travels to the server, the server's RST travels back
            return Decision(RESET, now + self.rtt_s)
        return Decision(FORWARD, self._at(now, UP, size))

    def from_server(self, now: float, generation: int, size: int) -> Decision:
        if not self.mapped(generation):
            return Decision(DROP)
        return Decision(FORWARD, self._at(now, DOWN, size))

    def _at(self, now: float, direction: str, size: int) -> float:
        if self.link.loss or self.link.blackouts:
            raise ValueError("a TCP relay cannot drop bytes of a stream: no loss or blackouts")
        at = self.link.decide(now, direction, size)
        assert at is not None
        return at

    def delivered(self, now: float, direction: str, size: int) -> None:
        if size:
            self.link.delivered(now, direction, size)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets an RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class _Relayed:
    """One relayed connection: the client side, the upstream side and their generation."""

    def __init__(self, client: asyncio.StreamWriter, generation: int):
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.generation = generation


class TcpLinkEmulator:
    def __init__(self, target: tuple[str, int], model: TcpLinkModel | None = None,
                 listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.target = target
        self.listen_addr = listen
        self.model = model or TcpLinkModel()
        self._server: asyncio.Server | None = None
        self._conns: set[_Relayed] = set()
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._server.sockets[0].getsockname()[:2]

    def now(self) -> float:
        return self._loop.time()

    async def start(self) -> TcpLinkEmulator:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._accepted, *self.listen_addr)
        return self

    def rebind(self) -> None:
        """NAT rebinding: every open connection's mapping is forgotten (the client is not told)."""
        self.model.rebind()

    def cut(self) -> None:
        """The path is gone: reset both sides of every relayed connection now."""
        for conn in list(self._conns):
            for w in (conn.client, conn.upstream):
                if w is not None:
                    reset(w)
        self._conns.clear()

    async def _accepted(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        conn = _Relayed(w, self.model.generation)
        self._conns.add(conn)
        try:
            await asyncio.sleep(self.model.connect_delay())
            try:
                ur, uw = await asyncio.open_connection(*self.target)
            except OSError:
                reset(w)
                return
            conn.upstream = uw
            await asyncio.gather(self._up(conn, r), self._down(conn, ur), return_exceptions=True)
        finally:
            self._conns.discard(conn)
            self._tasks.discard(task)
            for x in (conn.client, conn.upstream):
                if x is not None and not x.is_closing():
                    x.close()

    async def _up(self, conn: _Relayed, r: asyncio.StreamReader) -> None:
        while True:
            data = await r.read(65536)
            d = self.model.from_client(self.now(), conn.generation, len(data))
            if d.action == RESET:
                self._loop.call_at(d.at, reset, conn.client)
                return
            self._loop.call_at(d.at, self._deliver, conn.upstream, UP, data)
            if not data:
                return

    async def _down(self, conn: _Relayed, r: asyncio.StreamReader) -> None:
        while True:
            data = await r.read(65536)
            d = self.model.from_server(self.now(), conn.generation, len(data))
            if d.action == DROP:
                if not data:
                    return  # the client never hears of it
                continue
            self._loop.call_at(d.at, self._deliver, conn.client, DOWN, data)
            if not data:
                return

    def _deliver(self, w: asyncio.StreamWriter, direction: str, data: bytes) -> None:
        if w.is_closing():
            return
        self.model.delivered(self.now(), direction, len(data))
        if data:
            w.write(data)
        elif w.can_write_eof():
            w.write_eof()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _start(args) -> tuple[TcpLinkEmulator, TcpLinkModel]:
    model = TcpLinkModel(args.delay_ms / 1000, args.jitter_ms / 1000, args.seed)
    return await TcpLinkEmulator(hostport(args.target), model, hostport(args.listen)).start(), model


def main(argv: list[str] | None = None) -> int:
    return relay_main(argv, "python -m hil.tcplink", __doc__.split("\n")[0], "127.0.0.1:8884",
                      _start, with_loss=False)


if __name__ == "__main__":
    sys.exit(main())
