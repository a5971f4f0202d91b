"""A real nats-server (Debian's package) on loopback for the fan-out tests, and a cluster of
three joined by routes in network namespaces (`NatsCluster`)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

READY_TIMEOUT_S = 10.0


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, port: int | None = None, config: str | None = None):
        """`config`: a nats-server configuration file (credentials, TLS)."""
        self.binary = shutil.which("nats-server")
        if self.binary is None:
            raise RuntimeError("nats-server is not installed (make deps-test: APT_TEST)")
        self.port = port or free_tcp_port()
        self.proc: subprocess.Popen | None = None
        self.config = config

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        extra = ["-c", self.config] if self.config else []
        self.proc = subprocess.Popen([self.binary, *extra, "-a", "127.0.0.1", "-p",
                                      str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    stop = kill


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
