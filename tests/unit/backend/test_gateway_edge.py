"""The gateway's UDP edge bounds the work of one loop callback (backend/gateway_edge.py,
`MAX_TRANSMITS_PER_CALLBACK`): a backlog of transmits, or of receive-flushes come due
together, leaves in slices, first come first served, with the loop's other work between
them. No sockets: the edge writes to a list; the connections' QUIC side is a stand-in that
has one datagram to send per transmit."""

from __future__ import annotations

import asyncio

from backend.gateway_edge import (
    MAX_TRANSMITS_PER_CALLBACK,
    RECEIVE_FLUSH_DELAY_S,
    EdgeConnection,
    EdgeServer,
)
from geostream import ALPN
from geostream.quic import library
from tests.emuclock import run

# A backlog of several slices and a partial one.
BACKLOG = 3 * MAX_TRANSMITS_PER_CALLBACK + 5


class _Quic:
    """A connection's QUIC side with one datagram (its own number) to send per poll."""

    def __init__(self, number: int):
        self.number = number
        self.polls = 0

    def datagrams_to_send(self, now: float) -> list:
        self.polls += 1
        return [(self.number.to_bytes(4, "big"), ("127.0.0.1", 40000 + self.number))]

    def get_timer(self) -> float | None:
        return None


class _Wire:
    """Stands where the UDP socket sits: each `send_many` call's datagram numbers."""

    def __init__(self):
        self.calls: list[list[int]] = []

    def send_many(self, datagrams) -> None:
        self.calls.append([int.from_bytes(data, "big") for data, _ in datagrams])

    def close(self) -> None:
        pass

    @property
    def sent(self) -> list[int]:
        return [n for call in self.calls for n in call]


def _edge(n: int) -> tuple[EdgeServer, _Wire, list[EdgeConnection]]:
    lib = library("qh3")
    server = EdgeServer(lib, configuration=lib.QuicConfiguration(is_client=False,
                                                                 alpn_protocols=[ALPN]),
                        create_protocol=EdgeConnection)
    wire = _Wire()
    server.connection_made(wire)
    return server, wire, [EdgeConnection(_Quic(i), server) for i in range(n)]


async def test_a_backlog_of_transmits_leaves_in_slices_with_the_loop_between_them():
    server, wire, conns = _edge(BACKLOG)
    seen_by_other_work: list[int] = []
    for conn in conns:  # a commit's acks for BACKLOG vehicles
        conn.transmit()
    asyncio.get_running_loop().call_soon(lambda: seen_by_other_work.append(len(wire.sent)))
    for _ in range(20):  # bounded: a few loop turns
        await asyncio.sleep(0)
    assert wire.sent == list(range(BACKLOG)), "each once, first dirtied first"
    assert max(len(call) for call in wire.calls) == MAX_TRANSMITS_PER_CALLBACK
    assert len(wire.calls) == 4
    assert seen_by_other_work == [MAX_TRANSMITS_PER_CALLBACK], "other work ran after one slice"
    assert server.stats["transmits_deferred"] == 3
    server.close()


async def test_a_connection_dirtied_during_a_backlog_waits_one_slice_at_most_behind_it():
    server, wire, conns = _edge(BACKLOG + 1)
    late = conns.pop()
    for conn in conns:
        conn.transmit()
    await asyncio.sleep(0)  # one slice left
    late.transmit()
    late.transmit()  # dirty already: one transmit for both
    for _ in range(20):
        await asyncio.sleep(0)
    assert wire.sent == list(range(BACKLOG + 1)), "behind the backlog, not starved by it"
    assert late._quic.polls == 1
    server.close()


def test_receive_flushes_that_come_due_together_leave_in_slices():
    """After a stall, the receive-flushes of BACKLOG vehicles are due at once: one `_wake`
    transmits MAX_TRANSMITS_PER_CALLBACK of them, the next turns the rest, each once."""

    async def main():
        server, wire, conns = _edge(BACKLOG)
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in conns:
            server.flush_later(conn, now)
        loop._now += 2 * RECEIVE_FLUSH_DELAY_S  # the loop was busy: every flush is due
        for _ in range(20):
            await asyncio.sleep(0)
        server.close()
        return wire

    wire, _ = run(main())
    assert wire.sent == list(range(BACKLOG))
    assert max(len(call) for call in wire.calls) == MAX_TRANSMITS_PER_CALLBACK
