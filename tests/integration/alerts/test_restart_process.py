"""A real backend process restarted in the middle of an overspeed episode opens no second
alert: agent and GPS simulator as processes, SIGTERM (or kill -9, which loses the engine's
deferred checkpoints) and a new `python -m backend`."""

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import wait_for

# the simulator holds the drive after this many fixes (2 Hz: GNSS 19.0 s), inside the stretch
# of 120 km/h (8 s to 32 s) and after the alert opened (10 s of it, at 18 s), so the restart
# happens mid-episode whatever the machine's speed: nothing the backend receives can close it.
# 12.5 s of the stretch come after the hold: a new process that forgot the open episode would
# open a second alert within them (10 s at 120 km/h)
HOLD_AFTER = 39


def _overspeed(db_path) -> list[tuple]:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT id, start_ms, end_ms, state FROM alerts "
                          "WHERE rule='overspeed' ORDER BY id").fetchall()


def _stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP): state T in /proc/PID/stat."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
def test_backend_restart_mid_episode(procs, stop):
    procs.provision("truck-1")
    backend = procs.backend()
    # base 30 km/h (at most 48), 120 km/h from 8 s to 32 s of the run, once: the overspeed
    # comes round every 32 s (again from 40 s), so the run ends at 38.5 s (78 fixes at 2 Hz),
    # after the close (5 s below the limit, at 37 s). Else a late look at what was sent
    # counted the second stretch's fast fixes into the expected end; GNSS times are the
    # simulator's own (start + n/rate), never wall-clock gaps
    sim = procs._spawn(["-m", "hil.gps_sim", "--link", str(procs.tty("truck-1")), "--rate", "2",
                        "--speed", "30", "--overspeed", "120:32:24", "--count", "78",
                        "--pause-after", str(HOLD_AFTER), "--record",
                        str(procs.record("truck-1")), "--wait-reader"], "truck-1.sim")
    try:
        wait_for(lambda: procs.tty("truck-1").exists(), 10, "simulator pty")
        agent = procs.agent("truck-1")
        wait_for(lambda: _stopped(sim.popen.pid), 60, f"the simulator holding after "
                 f"{HOLD_AFTER} fixes")
        wait_for(lambda: any(state == "open" for *_, state in _overspeed(procs.db_path)), 60,
                 "an open overspeed alert")
        [(first_id, start, _, _)] = _overspeed(procs.db_path)
        if stop == "kill9":  # checkpoints since the open are only in that process's memory
            backend.kill9()
        else:
            assert backend.stop() == 0
        procs.backend()  # the agent journals meanwhile and drains into the new process
        assert _overspeed(procs.db_path) == [(first_id, start, None, "open")]
    finally:
        sim.popen.send_signal(signal.SIGCONT)  # the drive goes on
    wait_for(lambda: any(state == "closed" for *_, state in _overspeed(procs.db_path)), 60,
             "the overspeed alert closed")
    sent = procs.sent("truck-1")
    fast = [r["ts_ms"] for r in sent if r["speed_kmh"] > 90]
    assert _overspeed(procs.db_path) == [(first_id, fast[0], fast[-1] + 500, "closed")]
    assert start == fast[0]
    assert agent.alive() and agent.stop() == 0
