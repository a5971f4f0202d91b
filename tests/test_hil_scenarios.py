"""`python -m hil SCENARIO` (the users' HIL entry point), reduced to fit `make test`: each
scenario's report, checked against the backend's database read here independently."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from .conftest import REPO, _env


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
], ids=lambda a: a[0])
def test_scenario_reports_no_loss_and_no_duplicate(tmp_path, args):
    report = _hil(tmp_path, *args)
    assert report["scenario"] == args[0]
    assert report["ok"], report
    assert (report["lost"], report["duplicated"]) == (0, 0)
    assert report["recover_s"] is not None
    if args[0] == "tunnel":  # the blackout really held readings back
        assert report["backlog_after"] >= 8 * 5 // 2, report
    if args[0] != "crash":
        assert report["unread"] == 0 and report["accepted"] == report["sent"]
    _db_check(tmp_path, report)


def test_a_users_nmea_capture_is_played_and_accounted_for(tmp_path):
    report = _hil(tmp_path / "run", "drive", "--nmea",
                  str(REPO / "tests" / "data" / "nmea" / "quectel_lc.nmea"))
    # 16 fixes in the capture (nmea-decode's count); every one stored, once
    assert (report["sent"], report["stored"], report["lost"], report["unread"]) == (16, 16, 0, 0)
