"""The cab server's bound on connections at once (docs/protocol.md §11): past MAX_CONNECTIONS a
new connection is answered `503 Service Unavailable` with `Retry-After` and closed, so a
misbehaving tablet (or anything on the cab's Wi-Fi) cannot grow the Pi's memory without
limit, and the refusal is one the app understands instead of a hang.

`ConnectionCap` is the count (pure); `CappedSite` is aiohttp's TCPSite with each connection's
protocol wrapped in `_Capped`, which takes a place once the TLS handshake is done (a
handshake that fails never counts) and gives it back when the connection ends.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

# Connections at once. A cab has one or two tablets; a browser opens at most 6 connections to
# one origin (HTTP/1.1) plus the app's live WebSocket: 2 × 7 = 14, so 16 never refuses an
# honest cab. Each TLS connection holds ~100 KB (OpenSSL's buffers, aiohttp's handler): 16 are
# ~1.6 MB of a Pi whose agent runs in a few tens of MB.
MAX_CONNECTIONS = 16
# What a refused client is told to wait: a tablet's own connections close within seconds.
RETRY_AFTER_S = 5
# How long a refused connection may take to send its request before it is closed unanswered.
REFUSAL_WAIT_S = 10.0
# How long a TLS handshake may take (asyncio's default is 60 s): a tablet on the cab's own
# Wi-Fi finishes in well under a second; handshakes in progress hold a place nowhere, so this
# is what bounds them.
HANDSHAKE_TIMEOUT_S = 10.0


class ConnectionCap:
    """At most `limit` places; `take()` False when full."""

    def __init__(self, limit: int = MAX_CONNECTIONS):
        self.limit = limit
        self.open = 0
        self.refused = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open = max(0, self.open - 1)


def refusal() -> bytes:
    """The whole answer to a connection over the cap."""
    body = json.dumps({"error": "too many connections to the cab server; try again in "
                       f"{RETRY_AFTER_S} s"}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (RETRY_AFTER_S, len(body))) + body


class _Refused(asyncio.Protocol):
    """A connection over the cap: its request's first bytes are answered 503 and it closes
    (answered after the request, so the client reads the answer instead of a reset)."""

    def __init__(self):
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_WAIT_S, transport.close)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(refusal())
            self._transport.close()

    def connection_lost(self, exc) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _Capped(asyncio.Protocol):
    """One connection: aiohttp's handler while a place is free, else `_Refused`."""

    def __init__(self, cap: ConnectionCap, make_handler):
        self._cap, self._make = cap, make_handler
        self._inner: asyncio.Protocol = _Refused()
        self._counted = False

    def connection_made(self, transport) -> None:  # after the TLS handshake
        if self._cap.take():
            self._counted = True
            self._inner = self._make()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self):
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc) -> None:
        if self._counted:
            self._counted = False
            self._cap.give_back()
        self._inner.connection_lost(exc)


class CappedSite(web.TCPSite):
    """aiohttp's TCPSite, each connection through `cap`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, ssl_context,
                 cap: ConnectionCap):
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.cap = cap

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registered with the runner (TCPSite's own start
        server = self._runner.server    # passes aiohttp's handler factory unwrapped)
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Capped(self.cap, server), self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if self._ssl_context else None)
        self._bound_port = self._server.sockets[0].getsockname()[1]
