"""A small authoritative DNS responder for the routers' name (docs/scaling.md §9).

`Answerer.answer(query, now)` is the sans-IO core: dnslib parses and builds the wire format
(RFC 1035); the name gets an A (or AAAA) record per healthy router from a `HealthBook`, with
the short `TTL_S`, so a resolver that honours it stops handing out a dead router within
TTL_S + the book's STALE_AFTER_S. Other names in the zone: NXDOMAIN; names outside it: REFUSED
(authoritative only, never a resolver). `DnsEdge` is the UDP socket around it.
"""

from __future__ import annotations

import asyncio
import ipaddress

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSLabel, DNSRecord
from dnslib.dns import DNSError

from .health import HealthBook

# Short: a vehicle re-resolving before a reconnect sees a dead router gone within seconds;
# not zero, which some resolvers treat as "do not cache" and others clamp anyway.
TTL_S = 5
ROLE = "router"


class Answerer:
    def __init__(self, name: str, book: HealthBook, ttl_s: int = TTL_S):
        self.name = DNSLabel(name)
        self.book = book
        self.ttl_s = ttl_s

    def answer(self, data: bytes, now: float) -> bytes | None:
        """The reply to one query datagram, or None for what is not a query (dropped)."""
        try:
            q = DNSRecord.parse(data)
        except (DNSError, IndexError, ValueError):
            return None
        if q.header.qr or not q.questions:
            return None
        reply = q.reply()  # QR and AA set, the question echoed
        reply.header.ra = 0
        qname, qtype = q.questions[0].qname, q.questions[0].qtype
        if not qname.matchSuffix(self.name):
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
        elif qname != self.name:
            reply.header.rcode = RCODE.NXDOMAIN
        else:
            for addr in self.book.healthy(ROLE, now):
                v6 = ipaddress.ip_address(addr).version == 6
                if qtype in (QTYPE.A, QTYPE.ANY) and not v6:
                    reply.add_answer(RR(qname, QTYPE.A, rdata=A(addr), ttl=self.ttl_s))
                elif qtype in (QTYPE.AAAA, QTYPE.ANY) and v6:
                    reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(addr), ttl=self.ttl_s))
        return bytes(reply.pack())


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, edge: DnsEdge):
        self.edge = edge

    def connection_made(self, transport) -> None:
        self.edge.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        out = self.edge.answerer.answer(data, asyncio.get_running_loop().time())
        if out is not None:
            self.edge.transport.sendto(out, addr)


class DnsEdge:
    def __init__(self, answerer: Answerer):
        self.answerer = answerer
        self.transport = None

    async def start(self, host: str, port: int) -> DnsEdge:
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(host, port))
        return self

    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
