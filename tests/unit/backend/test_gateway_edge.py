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


class _Recording(EdgeConnection):
    """A connection that keeps what it receives; `advance` moves the edge's clock on from
    its receive, as a handshake's immediate transmit does."""

    advance = 0.0

    def datagram_received(self, data: bytes, addr, now: float) -> None:
        self.got.append((data, addr, now))
        if self.advance:
            self._edge.clock(now + self.advance)


def _routing_edge() -> tuple[EdgeServer, dict[bytes, _Recording]]:
    server, _, _ = _edge(0)
    conns = {}
    # the server's own CIDs (8 bytes) and a client's odd-length original DCID (3 bytes)
    for cid in (b"A" * 8, b"B" * 8, b"odd"):
        conn = conns[cid] = _Recording(_Quic(0), server)
        conn.got = []
        server.register_cid(cid, conn)
    return server, conns


def _hostile_read() -> list:
    addr, other = ("127.0.0.1", 5000), ("::1", 6000, 0, 0)
    return [
        (b"\x40" + b"A" * 8 + b"payload", addr),
        (b"", addr),  # empty
        (b"\x40", addr),  # a short header without its CID
        (b"\x40odd", other),  # shorter than a CID: a prefix of no CID here, the odd one's bytes
        (b"\x40" + b"C" * 8 + b"x", addr),  # an unknown CID
        (b"\xc0\x00\x00\x00\x01\x08" + b"B" * 8 + b"\x00", addr),  # a long header, known CID
        (b"\xc0\x00\x00", other),  # a truncated long header
        (b"\x40" + b"B" * 8 + b"y", other),  # known CID, another address
        (b"\x40" + b"A" * 8 + b"again", addr),
    ]


async def test_one_reads_datagrams_route_as_each_alone_would():
    """`receive_many` (a batch read) sends every datagram where `receive` sends it alone,
    hostile ones included (empty, truncated, unknown or too short a CID, long headers), and
    counts the same."""
    one_by_one, alone = _routing_edge()
    batched, together = _routing_edge()
    for data, addr in _hostile_read():
        one_by_one.receive(data, addr, 5.0)
    batched.receive_many(_hostile_read(), 5.0)
    assert {cid: c.got for cid, c in together.items()} == {cid: c.got for cid, c in alone.items()}
    assert [d for d, _, _ in together[b"A" * 8].got] == [b"\x40" + b"A" * 8 + b"payload",
                                                          b"\x40" + b"A" * 8 + b"again"]
    assert together[b"odd"].got == []
    assert batched.stats == one_by_one.stats
    assert batched.stats["datagrams_in"] == len(_hostile_read())


async def test_a_reads_datagrams_take_its_time_and_never_an_earlier_one_than_was_given():
    """The datagrams of one read all take the read's time, unless a receive among them
    moved the edge's clock on (it sent): those after it take that time, never an earlier
    one (qh3 closes a connection that is handed an earlier time than it sent at)."""
    server, conns = _routing_edge()
    first, second = conns[b"A" * 8], conns[b"B" * 8]
    first.advance = 0.25
    read = [(b"\x40" + b"B" * 8 + b"1", ("127.0.0.1", 1)),
            (b"\x40" + b"A" * 8 + b"2", ("127.0.0.1", 2)),
            (b"\x40" + b"B" * 8 + b"3", ("127.0.0.1", 1))]
    server.receive_many(read, 7.0)
    assert [now for _, _, now in second.got] == [7.0, 7.25]
    assert [now for _, _, now in first.got] == [7.0]
    server.receive_many(read[:1], 7.1)  # a read stamped before the clock the edge gave
    assert second.got[-1][2] == 7.25
