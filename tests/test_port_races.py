"""The backend process fixture (tests/conftest.py) starts on the kernel's ports and, on a
restart, waits for its own port while another program holds it for a moment, instead of
failing with "Address already in use"."""

from __future__ import annotations

import socket
import threading

from .conftest import wait_for


def test_backend_first_start_reads_its_ports_and_a_restart_waits_for_them(procs):
    backend = procs.backend()
    quic, http = procs.quic_port, procs.http_port
    assert quic and http
    assert backend.stop() == 0
    log = procs.tmp / "backend.log"
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", quic))  # someone takes the gateway's port for a moment
    restart = threading.Thread(target=procs.backend)
    restart.start()
    try:  # the squatter leaves once the restart has failed on its port at least once
        wait_for(lambda: "Address already in use" in log.read_text(), 60, "a refused start")
    finally:
        squatter.close()
    restart.join(60)
    assert not restart.is_alive()
    assert (procs.quic_port, procs.http_port) == (quic, http)
    assert procs.procs[-1].alive()
