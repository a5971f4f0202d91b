"""The egress rule, pure (`EgressPolicy`, `check_http_url`): which addresses and URLs outgoing
requests may go to. Its edges, which apply it on the address actually connected to, are in
backend/notify/egress.py; this module imports no HTTP library, so checking the `[notify]`
settings (every backend command does) costs no aiohttp import."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A request to a receiver gives up after this long: a slow receiver must not hold a delivery
# worker (the outbox retries it later).
REQUEST_TIMEOUT_S = 10.0
# The most of a receiver's answer read (its status matters, its body only for the delivery
# log): a hostile receiver cannot make us buffer megabytes.
MAX_RESPONSE_BYTES = 4096
# The schemes an HTTP destination may have.
HTTP_SCHEMES = ("http", "https")
# The longest URL accepted as a destination (as browsers and proxies commonly cap them).
MAX_URL_LENGTH = 2048


class EgressRefused(ValueError):
    """The destination is not allowed (the message says why, for the API and the log)."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Admin-allowed ranges from configuration ("127.0.0.0/8", "10.1.2.3", "fd00::/8");
    ValueError naming the bad one."""
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(str(v).strip(), strict=False))
        except ValueError:
            raise ValueError(f"allow_networks: {v!r} is not an address or network") from None
    return tuple(out)


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses outgoing requests may connect to (pure)."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, allow_networks: Iterable[str] = ()) -> EgressPolicy:
        return cls(parse_networks(allow_networks))

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why `address` may not be connected to, or None if it may."""
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed if net.version == ip.version):
            return None
        for kind, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                           ("multicast", ip.is_multicast), ("private", ip.is_private),
                           ("unspecified", ip.is_unspecified), ("reserved", ip.is_reserved)):
            if flag:
                return f"{ip} is a {kind} address (not allowed for outgoing requests)"
        if not ip.is_global:
            return f"{ip} is not a public address (not allowed for outgoing requests)"
        return None

    def check(self, address: str | IPAddress) -> None:
        reason = self.refusal(address)
        if reason is not None:
            raise EgressRefused(reason)

    def filter(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The allowed ones of `host`'s resolved addresses, in order; EgressRefused (with the
        first reason) if none is."""
        ok, reasons = [], []
        for a in addresses:
            r = self.refusal(a)
            (reasons.append(r) if r else ok.append(a))
        if not ok:
            raise EgressRefused(f"{host}: {reasons[0]}" if reasons
                                else f"{host}: no address")
        return ok


def literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_http_url(url: str, policy: EgressPolicy | None = None) -> str:
    """The URL if it can be a destination (scheme, host, length; an IP literal checked against
    `policy`); EgressRefused saying what is wrong. A name is checked later, when connecting."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise EgressRefused(f"a URL of 1..{MAX_URL_LENGTH} characters is needed")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in HTTP_SCHEMES:
        raise EgressRefused(f"the URL's scheme must be one of {', '.join(HTTP_SCHEMES)}")
    if not parts.hostname:
        raise EgressRefused("the URL has no host")
    if parts.username or parts.password:
        raise EgressRefused("credentials in the URL are not accepted (use the signing secret)")
    del port
    ip = literal_ip(parts.hostname)
    if ip is not None and policy is not None:
        policy.check(ip)
    return url
