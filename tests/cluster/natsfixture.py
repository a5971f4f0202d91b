"""A real nats-server (Debian's package) on loopback for the fan-out tests."""

from __future__ import annotations

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
