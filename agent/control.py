"""The status socket of a running agent, its client, and the optional Prometheus textfile.

Protocol on the unix socket: the client connects and sends one line (`status\\n`); the agent
answers one line of JSON (agent/status.py) and closes. `action {json}\\n` hands the agent a
driver's action taken on the vehicle (docs/protocol.md §4 "act"): it is committed to the
journal before the answer (`{"ok": true, "seq": q}`), so an app that saw "ok" never loses it.
`cab {json}\n` asks the in-cab tablet's server (agent/cab/) for a pairing code, to unpair, or
for the paired devices (`fleet-agent cab`).
The socket lives in systemd's RuntimeDirectory (/run/fleet-agent, mode 0750) and is made mode
0660: root and group fleet-agent may ask, nobody else. Nothing in the answer is a secret (no token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

SOCKET_NAME = "status.sock"
# systemd's RuntimeDirectory=fleet-agent; the CLI looks here when not told otherwise
DEFAULT_RUNTIME_DIR = "/run/fleet-agent"
SOCKET_MODE = 0o660
# a request is one short line; anything longer is not ours
MAX_REQUEST = 256
# an action line: a driver's action with a message of 2,000 characters (escaped) fits
MAX_ACTION_REQUEST = 16384
CLIENT_TIMEOUT_S = 5.0
# the agent answers within this or drops the client: a stuck reader never holds the loop
SERVE_TIMEOUT_S = 5.0


def default_socket_path(section: dict | None = None, environ=None) -> str:
    """[status] socket, else $RUNTIME_DIRECTORY/status.sock, else /run/fleet-agent/status.sock."""
    env = os.environ if environ is None else environ
    if section and section.get("socket"):
        return str(section["socket"])
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0] or DEFAULT_RUNTIME_DIR
    return str(Path(runtime) / SOCKET_NAME)


class StatusServer:
    """Answers each connection with `await snapshot()` as one JSON line."""

    def __init__(self, path: str, snapshot: Callable[[], Awaitable[dict]],
                 on_action: Callable[[object], Awaitable[dict]] | None = None,
                 on_cab: Callable[[object], Awaitable[dict]] | None = None):
        self.path = path
        self.snapshot = snapshot
        self.on_action = on_action  # the daemon's: journal an action, answer its seq
        self.on_cab = on_cab  # the cab server's: pair, unpair, devices (agent/cab/)
        self._server: asyncio.AbstractServer | None = None
        self.served = 0

    async def start(self) -> bool:
        """Listen; False (logged) when the socket cannot be made: the agent runs on without."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a killed agent
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path,
                                                           limit=MAX_ACTION_REQUEST)
            os.chmod(self.path, SOCKET_MODE)
        except OSError as exc:
            log.warning("status socket %s: %s (fleet-agent status will not answer)",
                        self.path, exc)
            return False
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(SERVE_TIMEOUT_S):
                line = await reader.readline()
                body = None
                if line.startswith(b"action ") and self.on_action is not None:
                    try:
                        action = json.loads(line[7:])
                    except ValueError:
                        body = {"ok": False, "error": "the action is not JSON"}
                    else:
                        body = await self.on_action(action)
                elif line.startswith(b"cab ") and len(line) <= MAX_REQUEST:
                    try:
                        request = json.loads(line[4:])
                    except ValueError:
                        request = None
                    body = (await self.on_cab(request) if self.on_cab is not None else
                            {"ok": False, "error": "the cab server is off ([cab] enabled)"})
                elif line.strip() in (b"", b"status") and len(line) <= MAX_REQUEST:
                    body = await self.snapshot()
                if body is not None:
                    writer.write(json.dumps(body, default=str).encode() + b"\n")
                    await writer.drain()
                    self.served += 1
        except (TimeoutError, OSError, ValueError) as exc:  # ValueError: a line too long
            log.debug("status client: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def query(path: str, timeout: float = CLIENT_TIMEOUT_S, line: bytes = b"status\n") -> dict:
    """Ask a running agent (blocking). Raises OSError when nobody answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(line)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise ConnectionError(f"{path}: the agent closed without answering")
    return json.loads(data)


def write_textfile(path: str, snap: dict) -> None:
    """The snapshot as Prometheus metrics in node_exporter's textfile format (atomic write)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    reg = CollectorRegistry()
    vehicle = snap["vehicle"]

    def gauge(name: str, doc: str, value, labels: dict | None = None) -> None:
        if value is None or isinstance(value, bool | str):
            return
        names = ["vehicle", *(labels or {})]
        g = gauges.get(name) or Gauge(name, doc, names, registry=reg)
        gauges[name] = g
        g.labels(vehicle, *(labels or {}).values()).set(value)

    gauges: dict[str, Gauge] = {}
    link, journal = snap["link"], snap["journal"]
    gauge("fleet_agent_uptime_seconds", "Seconds since the agent started", snap["uptime_s"])
    gauge("fleet_agent_link_up", "1 when the uplink is connected",
          1 if link.get("state") == "connected" else 0)
    gauge("fleet_agent_link_rtt_seconds", "Smoothed QUIC round-trip time",
          None if link.get("rtt_ms") is None else link["rtt_ms"] / 1000)
    gauge("fleet_agent_last_ack_age_seconds", "Seconds since the last ack",
          link.get("last_ack_age_s"))
    gauge("fleet_agent_readings_sent", "Readings sent this run", link.get("readings_sent"))
    gauge("fleet_agent_readings_acked", "Readings acknowledged this run",
          link.get("readings_acked"))
    gauge("fleet_agent_journal_bytes", "Journal file size (with WAL)", journal["file_bytes"])
    gauge("fleet_agent_journal_backlog", "Readings not yet acknowledged", journal["backlog"])
    gauge("fleet_agent_journal_oldest_unsent_seconds", "Age of the oldest unsent reading",
          journal["oldest_unsent_age_s"])
    for name, src in snap["sources"].items():
        for key, value in src.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                gauge("fleet_agent_source_counter", "A source's counters",
                      value, {"source": name, "counter": key})
    write_to_textfile(path, reg)
