"""The agent's link on a resumed attempt whose first flights are all lost (a tunnel, a dead
cell): qh3 2.1.0's core sends its first probe, then raises "missing OneRtt packet key" at every
later one. The error must stay that connection's: nothing thrown into the event loop, the
timer still armed and the attempt still open for a late answer (the uplink's connect timeout
ends it), where before the error escaped and the attempt's timer was lost. The server is a UDP
socket on loopback that never answers; the session ticket comes from a real in-memory handshake
with the same CA."""

from __future__ import annotations

import asyncio
import socket

from agent.quic_link import QuicLink
from geostream import ALPN
from geostream.quic import library
from tests.integration.net.test_quic_tls_trim import certs, trimmed_pair  # noqa: F401

PAST_SECOND_PROBE_S = 2.5  # qh3's probes come at ~0.9 s and ~1.5 s, the next at ~2.9 s


async def test_a_resumed_attempt_that_hears_nothing_keeps_its_timer(certs):  # noqa: F811
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
        await asyncio.sleep(PAST_SECOND_PROBE_S)
        assert errors == []  # nothing thrown into the event loop
        assert link.core_refusals >= 1  # the second probe was refused
        assert not link.closed.is_set() and not link.connected.done()  # still open
        assert link._timer is not None  # and its timer still armed
        assert link.datagrams_sent >= 2  # the first flight and the one probe qh3 sends
    finally:
        loop.set_exception_handler(None)
        link.abort()
        hole.close()
