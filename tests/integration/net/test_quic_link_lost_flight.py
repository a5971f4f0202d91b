"""The agent's link on a resumed attempt whose first flights are all lost (a tunnel, a dead
cell): qh3 2.1.0's core sends its first probe, then raises "missing OneRtt packet key" at every
later one, so the attempt must end at once as a failed connect (the uplink reconnects on its
backoff) instead of sending nothing more until the 10 s connect timeout, with its timer lost
and the error thrown into the event loop. The server is a UDP socket on loopback that never
answers; the session ticket comes from a real in-memory handshake with the same CA."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agent.quic_link import QuicLink
from geostream import ALPN
from geostream.quic import library
from tests.integration.net.test_quic_tls_trim import certs, trimmed_pair  # noqa: F401

GIVE_UP_S = 6.0  # qh3's probes come at ~0.9 s and ~1.5 s; the connect timeout is 10 s


async def test_a_resumed_attempt_that_hears_nothing_ends_instead_of_hanging(certs):  # noqa: F811
    lib = library("qh3")
    tickets: list = []
    trimmed_pair(lib, certs, tickets)
    assert tickets
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))  # bound, never read: everything sent to it is lost
    errors: list = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                    server_name="localhost")
        cfg.load_verify_locations(cafile=certs["ca"])
        cfg.session_ticket = tickets[0]
        link = QuicLink(cfg, hole.getsockname(), lambda *a: None, lib=lib)
        await link.start("127.0.0.1")
        link.send(link.conn.get_next_available_stream_id(), b"hello as 0-RTT")
        with pytest.raises(ConnectionError, match="core refused"):
            async with asyncio.timeout(GIVE_UP_S):
                await asyncio.shield(link.connected)
        assert link.closed.is_set()
        assert link.datagrams_sent >= 2  # the first flight and the one probe qh3 sends
        assert errors == []  # nothing thrown into the event loop
    finally:
        loop.set_exception_handler(None)
        link.abort()
        hole.close()
