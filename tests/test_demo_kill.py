"""A SIGKILLed `make demo` leaves nothing behind: its backend, simulators and agents stop and
the ports are free again (hil/lifeline.py: PR_SET_PDEATHSIG in every child)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

from .conftest import REPO, _env, wait_for

VEHICLES = 2


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, read from /proc (not from the demo's own bookkeeping)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigkill_of_the_demo_stops_every_child_and_frees_the_ports(tmp_path):
    demo = subprocess.Popen(  # port 0: the ports the demo's backend got are in its output
        [sys.executable, "-m", "hil.demo", "--dir", str(tmp_path / "demo"), "--vehicles",
         str(VEHICLES), "--http-port", "0", "--quic-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), cwd=REPO, text=True)
    try:
        deadline = time.monotonic() + 120
        out = []
        while time.monotonic() < deadline and not any("gateway:" in s for s in out):
            line = demo.stdout.readline()
            assert line or demo.poll() is None, "".join(out)
            out.append(line)
        text = "".join(out)
        http = int(re.search(r"dashboard: \S+:(\d+)/", text)[1])
        quic = int(re.search(r"gateway: +udp \S+:(\d+)", text)[1])
        children = wait_for(lambda: (c := _children(demo.pid)) and len(c) >= 1 + 2 * VEHICLES
                            and c, 30, "backend + simulator + agent per vehicle")
        assert not _port_free(quic, socket.SOCK_DGRAM) and not _port_free(http, socket.SOCK_STREAM)
        demo.send_signal(signal.SIGKILL)
        demo.wait(10)
        wait_for(lambda: not any(_alive(c) for c in children), 30, "every child gone")
        wait_for(lambda: _port_free(quic, socket.SOCK_DGRAM)
                 and _port_free(http, socket.SOCK_STREAM), 10, "the ports free again")
    finally:
        if demo.poll() is None:
            demo.kill()
        for c in _children(demo.pid):
            os.kill(c, signal.SIGKILL)
