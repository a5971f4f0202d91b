"""The backend process fixture (tests/conftest.py) starts on the kernel's ports and, on a
restart, waits for its own port while another program holds it for a moment, instead of
failing with "Address already in use"."""

from __future__ import annotations

import socket
import threading


def test_backend_first_start_reads_its_ports_and_a_restart_waits_for_them(procs):
    backend = procs.backend()
    quic, http = procs.quic_port, procs.http_port
    assert quic and http
    assert backend.stop() == 0
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", quic))  # someone takes the gateway's port for a moment
    threading.Timer(1.5, squatter.close).start()
    procs.backend()
    assert (procs.quic_port, procs.http_port) == (quic, http)
    assert "Address already in use" in (procs.tmp / "backend.log").read_text()
