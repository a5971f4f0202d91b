"""Which address a request comes from, trusting X-Forwarded-For only from configured proxies."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items) -> tuple[Network, ...]:
    """`["127.0.0.1", "10.0.0.0/8", "::1"]` → networks; ValueError on a bad entry."""
    return tuple(ipaddress.ip_network(str(i).strip(), strict=False) for i in items or ())


def _trusted(addr: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in n for n in trusted)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: tuple[Network, ...]) -> str:
    """The client: the TCP peer, unless the peer is a trusted proxy; then the right-most
    X-Forwarded-For entry that is not itself a trusted proxy (entries further left are what
    the client claimed and could be forged)."""
    addr = peer or "unknown"
    if not forwarded_for or not _trusted(addr, trusted):
        return addr
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        addr = hop
        if not _trusted(hop, trusted):
            break
    return addr


def from_trusted_proxy(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    return bool(peer) and _trusted(peer, trusted)
