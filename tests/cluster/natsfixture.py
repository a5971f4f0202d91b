"""A real nats-server (Debian's package) on loopback for the fan-out tests, and a cluster of
three joined by routes in network namespaces (`NatsCluster`: its own addresses there, so fixed
ports).

No port is picked here and bound later: the first start asks nats-server for a random port
(`-p -1`, the kernel's choice at bind time) and learns it from the ports file that *this*
process writes once it listens (`--ports_file_dir`, named after its pid), so the readiness check
cannot be answered by another program's listener. A restart (`kill()` then `start()`) must keep
the port the clients know; if someone took it in between, nats-server exits and the start is
retried on the same port for a bounded time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

READY_TIMEOUT_S = 10.0
# a restart whose port another process holds for a moment (an ephemeral client socket) retries
# this long before it fails
RESTART_RETRY_S = 15.0
POLL_S = 0.05


class NatsServer:
    def __init__(self, port: int | None = None, config: str | None = None):
        """`config`: a nats-server configuration file (credentials, TLS)."""
        self.binary = shutil.which("nats-server")
        if self.binary is None:
            raise RuntimeError("nats-server is not installed (make deps-test: APT_TEST)")
        self.port = port  # None until the first start learns the kernel's choice
        self.proc: subprocess.Popen | None = None
        self.config = config
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-nats-"))

    @property
    def url(self) -> str:
        assert self.port is not None, "start() first"
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        deadline = time.monotonic() + (RESTART_RETRY_S if self.port else READY_TIMEOUT_S)
        while True:
            port = self._start_once()
            if port is not None:
                self.port = port
                return self
            if time.monotonic() >= deadline:
                raise RuntimeError(f"nats-server did not start on port {self.port or 'any'}: "
                                   f"{self._log_tail()}")
            time.sleep(0.2)

    def _start_once(self) -> int | None:
        """Start nats-server and return the port it listens on, or None if it exited (its
        port was taken)."""
        log = self.dir / "server.log"
        extra = ["-c", self.config] if self.config else []
        self.proc = subprocess.Popen(
            [self.binary, *extra, "-a", "127.0.0.1", "-p", str(self.port or -1),
             "--ports_file_dir", str(self.dir), "-l", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ports_file = self.dir / f"{Path(self.binary).name}_{self.proc.pid}.ports"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if ports_file.exists():
                try:
                    urls = json.loads(ports_file.read_text())["nats"]
                except (ValueError, KeyError):  # written but not complete yet
                    urls = []
                if urls:
                    return int(urls[0].rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                self.proc = None
                return None
            time.sleep(POLL_S)
        self.kill()
        raise RuntimeError(f"nats-server did not report ready: {self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.dir / "server.log"
        return log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    stop = kill

    def close(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class NatsCluster:
    """Three nats-servers joined by routes, one network namespace each on an NsLan (the LAN
    is the caller's: `members` names → their namespaces' addresses), fixed ports there."""

    CLIENT_PORT = 4222
    ROUTE_PORT = 6222
    MONITOR_PORT = 8222

    def __init__(self, lan, members: tuple[str, ...] = ("nats1", "nats2", "nats3")):
        self.binary = shutil.which("nats-server")
        if self.binary is None:
            raise RuntimeError("nats-server is not installed (make deps-test: APT_TEST)")
        self.lan = lan
        self.members = members
        self.procs: dict[str, subprocess.Popen] = {}

    def url(self, member: str) -> str:
        return f"nats://{self.lan.addr(member)}:{self.CLIENT_PORT}"

    def urls(self) -> str:
        """Every server, comma-separated, as `nats_url` takes them."""
        return ",".join(self.url(m) for m in self.members)

    def start(self) -> NatsCluster:
        routes = ",".join(f"nats://{self.lan.addr(m)}:{self.ROUTE_PORT}" for m in self.members)
        for m in self.members:
            ip = self.lan.addr(m)
            self.procs[m] = subprocess.Popen(
                [*self.lan.exec_args(m), self.binary, "-n", m, "-a", ip,
                 "-p", str(self.CLIENT_PORT), "-m", str(self.MONITOR_PORT),
                 "--cluster_name", "fleet", "--cluster", f"nats://{ip}:{self.ROUTE_PORT}",
                 "--routes", routes], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(self._routes(m) == len(self.members) - 1 for m in self.members):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the NATS cluster did not form its routes")

    def _routes(self, member: str) -> int:
        """Routes the member's server has (its /routez, asked from its own namespace)."""
        import urllib.request

        from .nslan import in_netns

        def ask() -> int:
            url = f"http://{self.lan.addr(member)}:{self.MONITOR_PORT}/routez"
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    return json.load(r)["num_routes"]
            except OSError:
                return -1
        return in_netns(self.lan.ns(member), ask)

    def kill(self, member: str) -> None:
        proc = self.procs.pop(member, None)
        if proc is not None:
            proc.kill()
            proc.wait(5)

    def stop(self) -> None:
        for m in list(self.procs):
            self.kill(m)
