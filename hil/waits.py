"""Small waits and look-ups the HIL rig shares: a bounded poll, a free port, open files."""

from __future__ import annotations

import asyncio
import os
import time


def holds(pid: int, path: str) -> bool:
    """Whether process `pid` has `path` open (from /proc)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            continue
    return False


def ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def free_port(tcp: bool = False) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(predicate, timeout: float, what: str, quiet: bool = False) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.2)
    if quiet:
        return False
    raise TimeoutError(f"no {what} within {timeout:.0f} s")
