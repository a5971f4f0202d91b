"""The nats-server fixture is not fooled by another program's listener (the race behind a flaky
fan-out test: a port picked, taken by someone else, and the readiness check answered by them)."""

from __future__ import annotations

import socket
import threading

import pytest

from . import natsfixture
from .natsfixture import NatsServer


def _listener(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def _is_nats(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        return c.recv(5) == b"INFO "  # a NATS server greets first


def test_a_port_someone_else_listens_on_is_never_reported_ready(monkeypatch):
    monkeypatch.setattr(natsfixture, "RESTART_RETRY_S", 1.0)
    squatter = _listener()
    try:
        server = NatsServer(port=squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="did not start"):
            server.start()
        server.close()
    finally:
        squatter.close()


def test_first_start_takes_the_kernels_port_and_a_restart_waits_for_its_own():
    server = NatsServer().start()
    try:
        port = server.port
        assert _is_nats(port)
        server.kill()
        squatter = _listener(port)  # someone holds the port for a moment
        threading.Timer(1.0, squatter.close).start()
        server.start()
        assert server.port == port and _is_nats(port)
    finally:
        server.close()
