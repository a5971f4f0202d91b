"""The router ⇄ node tunnel's datagrams, sans-IO (docs/scaling.md §4).

    data:      0x00 | client address (16 bytes, IPv4 as ::ffff:a.b.c.d) | port (2) | QUIC datagram
    heartbeat: 0x01 | server id (2)

A data datagram carries the vehicle's address both ways: to the node (where its QUIC server
sees the real client address, so path validation and migration work as on one machine) and
back to the router (which sends the payload to that address). No flow table anywhere.
"""

from __future__ import annotations

import socket

DATA = 0
HEARTBEAT = 1
HEADER_BYTES = 19
_V4_MAPPED = bytes(10) + b"\xff\xff"


def wrap(host: str, port: int, payload: bytes) -> bytes:
    """(socket.inet_pton, not ipaddress: the router does this per packet, ~10× cheaper.)"""
    host = host.split("%")[0]
    try:
        packed = _V4_MAPPED + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        packed = socket.inet_pton(socket.AF_INET6, host)
    return bytes([DATA]) + packed + port.to_bytes(2, "big") + payload


def unwrap(datagram: bytes) -> tuple[str, int, bytes]:
    """(client host, port, QUIC datagram), IPv4 unmapped; ValueError if not a data datagram."""
    if len(datagram) < HEADER_BYTES or datagram[0] != DATA:
        raise ValueError("not a tunnel data datagram")
    raw = datagram[1:17]
    if raw[:12] == _V4_MAPPED:
        host = socket.inet_ntop(socket.AF_INET, raw[12:])
    else:
        host = socket.inet_ntop(socket.AF_INET6, raw)
    return host, int.from_bytes(datagram[17:19], "big"), datagram[HEADER_BYTES:]


def heartbeat(server_id: int) -> bytes:
    return bytes([HEARTBEAT]) + server_id.to_bytes(2, "big")


def heartbeat_id(datagram: bytes) -> int | None:
    if len(datagram) != 3 or datagram[0] != HEARTBEAT:
        return None
    return int.from_bytes(datagram[1:3], "big")


def socket_host(host: str, ipv6_socket: bool) -> str:
    """The address as a socket of that family wants it (dual-stack: IPv4 mapped)."""
    if ipv6_socket and ":" not in host:
        return "::ffff:" + host
    return host
