"""A real backend process restarted in the middle of an overspeed episode opens no second
alert: agent and GPS simulator as processes, SIGTERM (or kill -9, which loses the engine's
deferred checkpoints) and a new `python -m backend`."""

import sqlite3

import pytest

from tests.conftest import wait_for


def _overspeed(db_path) -> list[tuple]:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT id, start_ms, end_ms, state FROM alerts "
                          "WHERE rule='overspeed' ORDER BY id").fetchall()


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
def test_backend_restart_mid_episode(procs, stop):
    procs.provision("truck-1")
    backend = procs.backend()
    # base 30 km/h (at most 48), 120 km/h from 15 s to 45 s of the run, once: the overspeed
    # comes round every 45 s (again from 60 s), so the run ends at 59.5 s (120 fixes at 2 Hz).
    # Else a late look at what was sent (the close seen 10+ s after the simulator's 50 s fix,
    # as after a slow restart under load) counted the second stretch's fast fixes into the
    # expected end; GNSS times are the simulator's own (start + n/rate), never wall-clock gaps
    procs._spawn(["-m", "hil.gps_sim", "--link", str(procs.tty("truck-1")), "--rate", "2",
                  "--speed", "30", "--overspeed", "120:45:30", "--count", "120",
                  "--record", str(procs.record("truck-1")), "--wait-reader"], "truck-1.sim")
    wait_for(lambda: procs.tty("truck-1").exists(), 10, "simulator pty")
    agent = procs.agent("truck-1")
    wait_for(lambda: any(state == "open" for *_, state in _overspeed(procs.db_path)), 60,
             "an open overspeed alert")
    [(first_id, start, _, _)] = _overspeed(procs.db_path)
    if stop == "kill9":  # checkpoints since the open are only in that process's memory
        backend.kill9()
    else:
        assert backend.stop() == 0
    procs.backend()  # the agent journals meanwhile and drains into the new process
    wait_for(lambda: any(state == "closed" for *_, state in _overspeed(procs.db_path)), 60,
             "the overspeed alert closed")
    sent = procs.sent("truck-1")
    fast = [r["ts_ms"] for r in sent if r["speed_kmh"] > 90]
    assert _overspeed(procs.db_path) == [(first_id, fast[0], fast[-1] + 500, "closed")]
    assert start == fast[0]
    assert agent.alive() and agent.stop() == 0
