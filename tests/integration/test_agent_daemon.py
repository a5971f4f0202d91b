"""The agent daemon as systemd runs it: notify protocol, watchdog, clean stop, bad config."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from tests.conftest import REPO, _env, wait_for


def test_daemon_notifies_ready_status_watchdog_and_stopping(procs, tmp_path):
    procs.provision("truck-n")
    procs.backend()
    procs.gps_sim("truck-n", rate=5)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = {**_env(), "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000"}
    agent = subprocess.Popen([sys.executable, "-m", "agent", "--config",
                              str(procs.agent_config("truck-n"))], env=env, cwd=REPO,
                             stderr=subprocess.DEVNULL)
    seen: list[str] = []

    def received(prefix: str) -> bool:
        try:
            seen.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            pass
        return any(s.startswith(prefix) for s in seen)

    try:
        wait_for(lambda: received("READY=1"), 20, "READY=1")
        # watchdog pings at half of WATCHDOG_USEC: at least 3 in 4 s
        seen.clear()
        wait_for(lambda: received("STATUS=") and sum(s == "WATCHDOG=1" for s in seen) >= 3,
                 6, "3 watchdog pings")
        wait_for(lambda: received("STATUS=gps: fix") and "uplink connected" in seen[-1], 20,
                 "status with a GPS fix and a connected uplink")
        assert "accepted" in seen[-1]
        agent.send_signal(signal.SIGTERM)
        wait_for(lambda: received("STOPPING=1"), 10, "STOPPING=1")
        assert agent.wait(15) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        sock.close()


def test_bad_config_refuses_to_start_naming_the_key(tmp_path):
    bad = tmp_path / "agent.toml"
    bad.write_text('[vehicle]\nid = "x"\n[server]\nhost = "h"\nca_file = "ca.pem"\n')
    out = subprocess.run([sys.executable, "-m", "agent", "--config", str(bad)],
                         capture_output=True, text=True, env=_env(), cwd=REPO, timeout=30)
    assert out.returncode == 2
    assert "token" in out.stderr and str(bad) in out.stderr


def test_config_without_any_source_refuses_to_start(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[vehicle]\nid = "x"\ntoken = "t"\n[server]\nhost = "h"\n'
                   'ca_file = "ca.pem"\n[journal]\npath = "j.sqlite"\n')
    out = subprocess.run([sys.executable, "-m", "agent", "--config", str(cfg)],
                         capture_output=True, text=True, env=_env(), cwd=REPO, timeout=30)
    assert out.returncode == 2
    assert "no source configured" in out.stderr
    assert not os.path.exists(tmp_path / "j.sqlite")
