"""systemd notification (READY, WATCHDOG, STATUS, STOPPING); silent outside systemd.

Uses systemd-python's `daemon.notify` when it is installed (the Debian package has it) and
the documented datagram protocol on $NOTIFY_SOCKET otherwise (development installs).
"""

from __future__ import annotations

import os
import socket

try:
    from systemd import daemon as _sd_daemon
except ImportError:  # no libsystemd: speak the protocol ourselves
    _sd_daemon = None


class SystemdNotifier:
    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET")
        self._addr = None
        if addr:
            # abstract namespace sockets start with '@' in the environment, NUL on the wire
            self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        self._watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)

    def notify(self, state: str) -> None:
        if not self._addr:
            return
        if _sd_daemon is not None:
            _sd_daemon.notify(state)
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(state.encode(), self._addr)
            except OSError:
                pass  # systemd going away must never take the agent with it

    def watchdog_interval(self, default: float) -> float:
        """Half the watchdog period, as sd_watchdog_enabled(3) recommends."""
        if self._watchdog_usec:
            return min(default, self._watchdog_usec / 2e6)
        return default
