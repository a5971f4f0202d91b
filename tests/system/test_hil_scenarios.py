"""`python -m hil SCENARIO` (the users' HIL entry point), reduced to fit `make test`: each
scenario's report, checked against the backend's database read here independently."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from hil import powercut
from tests.conftest import REPO, _env


def _hil(tmp_path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "hil", *args, "--dir", str(tmp_path), "--json"],
                         capture_output=True, text=True, env=_env(), cwd=REPO, timeout=400)
    assert out.stdout.strip(), out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == (0 if report["ok"] else 1)
    return report


def _db_check(tmp_path, report: dict) -> None:
    sent = [json.loads(s) for s in (tmp_path / "sent.jsonl").read_text().splitlines()]
    with sqlite3.connect(tmp_path / "fleet.db") as db:
        rows = db.execute("SELECT epoch, seq, time_ms FROM vehicle_telemetry "
                          "WHERE kind='pos'").fetchall()
    assert len(rows) == len(set((e, q) for e, q, _ in rows)), "a reading stored twice"
    assert report["sent"] == len(sent) and report["stored"] == len(rows)
    assert report["unread"] == len({s["ts_ms"] for s in sent} - {t for _, _, t in rows})


@pytest.mark.parametrize("args", [
    ("drive", "--fixes", "20", "--rate", "5"),
    ("tunnel", "--blackout-s", "8", "--rate", "5"),
    ("crash", "--crashes", "2", "--rate", "5"),
    ("handover", "--handovers", "4", "--rate", "5"),
    ("reboot", "--reboots", "2", "--rate", "5", "--boot-s", "1"),
    ("power-cut", "--cuts", "3", "--rate", "5", "--boot-s", "1"),
    pytest.param(("handover", "--netns", "--handovers", "4", "--rate", "5"),
                 marks=pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"),
                 id="handover-netns"),
    pytest.param(("disk-full", "--full-s", "8", "--rate", "5"), marks=pytest.mark.skipif(
        os.geteuid() != 0, reason="disk-full mounts a small tmpfs: needs root")),
], ids=lambda a: a[0])
def test_scenario_reports_no_loss_and_no_duplicate(tmp_path, args):
    report = _hil(tmp_path, *args)
    assert report["scenario"] == args[0]
    assert report["ok"], report
    assert (report["lost"], report["duplicated"]) == (0, 0)
    assert report["recover_s"] is not None
    if args[0] == "tunnel":  # the blackout really held readings back
        assert report["backlog_after"] >= 8 * 5 // 2, report
    if args[0] not in ("crash", "reboot", "power-cut"):
        assert report["unread"] == 0 and report["accepted"] == report["sent"]
    detail = report["detail"]
    if args[0] == "handover":  # the address really changed, and the connection moved along
        assert detail["address changes"] == 4
        assert detail["agent connections (1: every change migrated)"] == 1
        if "--netns" in args:  # the agent itself moved to each new address
            assert detail["migrations the agent logged"] >= 4
    if args[0] == "reboot":
        assert detail["reboots"] == 2
    if args[0] == "power-cut":  # the cuts discarded unsynced pages (-shm at least)
        assert detail["power cuts"] == 3 and detail["journal pages not fsynced, discarded"] > 0
        # the agent's own word (its log) agrees with the journal's count that survived
        assert 0 < detail["accepted as the agent logged it"] <= report["accepted"]
    if args[0] == "disk-full":  # the agent said so while full, and held what came in
        assert "degraded" in detail["journal states seen (agent's status)"]
        assert detail["most readings held in memory"] >= 8 * 5 // 2
    _db_check(tmp_path, report)


def test_a_users_nmea_capture_is_played_and_accounted_for(tmp_path):
    report = _hil(tmp_path / "run", "drive", "--nmea",
                  str(REPO / "tests" / "data" / "nmea" / "quectel_lc.nmea"))
    # 16 fixes in the capture (nmea-decode's count); every one stored, once
    assert (report["sent"], report["stored"], report["lost"], report["unread"]) == (16, 16, 0, 0)


_WRITER = r"""
import os, sqlite3, sys, time
d = sys.argv[1]
f = os.open(os.path.join(d, "plain"), os.O_RDWR | os.O_CREAT)
os.write(f, b"s" * 5000)
os.fsync(f)
os.write(f, b"u" * 5000)  # never synced
os.close(os.open(os.path.join(d, "never-synced"), os.O_RDWR | os.O_CREAT))
db = sqlite3.connect(os.path.join(d, "j.sqlite"), isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE t(x, synced)")
db.execute("PRAGMA synchronous=FULL")
for i in range(30):
    db.execute("INSERT INTO t VALUES (?, 1)", (i,))
db.execute("PRAGMA synchronous=OFF")  # commits that never reach an fsync
for i in range(30):
    db.execute("INSERT INTO t VALUES (?, 0)", (i,))
print("ready", flush=True)
time.sleep(60)
"""


def test_power_cut_keeps_what_was_fsynced_and_nothing_else(tmp_path):
    """hil/powercut.py on its own: a writer whose syncs the test chose, killed and cut."""
    durable, shadow = tmp_path / "disk", tmp_path / "shadow"
    durable.mkdir()
    env = {**os.environ, **powercut.environ(powercut.build(tmp_path / "lib"), durable, shadow)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(durable)], env=env,
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout.readline() == b"ready\n"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    with sqlite3.connect(durable / "j.sqlite") as db:  # everything is still in the page cache
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 60
    assert powercut.cut(durable, shadow) > 0
    assert (durable / "plain").read_bytes() == b"s" * 5000
    assert not (durable / "never-synced").exists()
    # the rollback journal of the switch to WAL was synced, then deleted: it stays deleted
    assert not (durable / "j.sqlite-journal").exists()
    with sqlite3.connect(durable / "j.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT synced, count(*) FROM t GROUP BY synced").fetchall() == [(1, 30)]
