"""Which local address reaches the gateway now, and a watcher that notices when it changes.

The kernel is asked with a connected UDP socket (no packet is sent); on Linux an rtnetlink
subscription to address and route changes triggers the check at once, and a periodic check
covers everything else (docs/protocol.md §8, migration).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from .quic_link import plain_host, v6_address
from .ticks import next_tick

log = logging.getLogger(__name__)

# How often the agent asks the kernel which local address reaches the gateway (migration, §8).
ROUTE_CHECK_S = 0.5
# rtnetlink multicast groups: IPv4/IPv6 addresses and routes, links
_RTNL_GROUPS = 0x1 | 0x10 | 0x40 | 0x100 | 0x400


def route_source(server_addr: tuple) -> str | None:
    """The local address the kernel would use to reach server_addr now (no packet is sent)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            s.connect(v6_address(server_addr))
        except OSError:  # no route: keep the current socket, QUIC's timers decide
            return None
        return plain_host(s.getsockname()[0])


def netlink_socket() -> socket.socket | None:
    """A non-blocking rtnetlink socket subscribed to address/route changes (Linux), or None."""
    try:
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        nl.bind((0, _RTNL_GROUPS))
        nl.setblocking(False)
        return nl
    except (AttributeError, OSError):
        return None


async def watch_routes(server_addr: tuple, on_source: Callable[[str], None],
                       every_s: float = ROUTE_CHECK_S) -> None:
    """Call `on_source(local address)` after each netlink change and every `every_s`; runs
    until cancelled."""
    changed = asyncio.Event()
    nl = netlink_socket()
    loop = asyncio.get_running_loop()
    if nl is not None:
        def on_netlink() -> None:
            try:
                while nl.recv(65536):
                    pass
            except BlockingIOError:
                pass
            except OSError:
                return
            changed.set()
        loop.add_reader(nl.fileno(), on_netlink)
    try:
        while True:
            try:  # on the agent's wake-up grid (agent/ticks.py)
                async with asyncio.timeout_at(next_tick(loop.time(), every_s)):
                    await changed.wait()
            except TimeoutError:
                pass
            changed.clear()
            src = route_source(server_addr)
            if src is not None:
                on_source(src)
    finally:
        if nl is not None:
            loop.remove_reader(nl.fileno())
            nl.close()
