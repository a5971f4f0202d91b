"""The router ⇄ node tunnel's datagrams, sans-IO (docs/scaling.md §4).

    data:      0x00 | client address (16 bytes, IPv4 as ::ffff:a.b.c.d) | port (2) | QUIC datagram
    heartbeat: 0x01 | server id (2)

A data datagram carries the vehicle's address both ways: to the node (where its QUIC server
sees the real client address, so path validation and migration work as on one machine) and
back to the router (which sends the payload to that address). No flow table anywhere.
"""

from __future__ import annotations

import ipaddress

DATA = 0
HEARTBEAT = 1
HEADER_BYTES = 19


def wrap(host: str, port: int, payload: bytes) -> bytes:
    ip = ipaddress.ip_address(host.split("%")[0])
    if ip.version == 4:
        ip = ipaddress.IPv6Address(f"::ffff:{ip}")
    return bytes([DATA]) + ip.packed + port.to_bytes(2, "big") + payload


def unwrap(datagram: bytes) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int, bytes]:
    """(client address, port, QUIC datagram); ValueError if it is not a data datagram."""
    if len(datagram) < HEADER_BYTES or datagram[0] != DATA:
        raise ValueError("not a tunnel data datagram")
    ip = ipaddress.IPv6Address(datagram[1:17])
    host = ip.ipv4_mapped or ip
    return host, int.from_bytes(datagram[17:19], "big"), datagram[HEADER_BYTES:]


def heartbeat(server_id: int) -> bytes:
    return bytes([HEARTBEAT]) + server_id.to_bytes(2, "big")


def heartbeat_id(datagram: bytes) -> int | None:
    if len(datagram) != 3 or datagram[0] != HEARTBEAT:
        return None
    return int.from_bytes(datagram[1:3], "big")


def socket_host(ip, ipv6_socket: bool) -> str:
    """The address as a socket of that family wants it (dual-stack: IPv4 mapped)."""
    if ipv6_socket and ip.version == 4:
        return f"::ffff:{ip}"
    return str(ip)
