"""The operator's side of a running agent: `fleet-agent status` over its unix socket, the
Prometheus textfile, SIGHUP reload, and journald-ready logging (issue 16)."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import stat
import subprocess
import sys

from agent import logging_setup
from agent.config import parse_config
from agent.reload import plan
from tests.conftest import REPO, _env, wait_for


def _status(sock, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", "status", "--socket", str(sock),
                           *args], capture_output=True, text=True, env=_env(), cwd=REPO,
                          timeout=30)


def _snap(sock) -> dict:
    out = _status(sock, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _pending_in_journal(path) -> int:
    """Independent of the agent's own stats: count the journal's rows directly."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return db.execute("SELECT count(*) FROM readings").fetchone()[0]


def _backend_status(db_path, vehicle: str) -> dict | None:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
        row = db.execute("SELECT status FROM vehicle_status WHERE vehicle_id=?",
                         (vehicle,)).fetchone()
    return None if row is None else json.loads(row[0])


def test_status_answers_from_a_running_agent(procs, tmp_path):
    sock = tmp_path / "status.sock"
    prom = tmp_path / "agent.prom"
    procs.provision("truck-st")
    backend = procs.backend()
    procs.gps_sim("truck-st", rate=5)
    agent = procs.agent("truck-st", f'\n[status]\nsocket = "{sock}"\n'
                        f'prometheus_textfile = "{prom}"\nreport_interval_s = 1\n')
    wait_for(sock.exists, 20, "status socket")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660  # group-readable, not world

    def connected_with_acks() -> bool:
        s = _snap(sock)
        return s["link"]["state"] == "connected" and s["link"]["readings_acked"] > 0
    wait_for(connected_with_acks, 30, "a connected uplink with acks")
    s = _snap(sock)
    assert s["vehicle"] == "truck-st" and s["uptime_s"] > 0
    assert s["link"]["server"] == f"127.0.0.1:{procs.quic_port}"
    assert s["link"]["rtt_ms"] is not None and s["link"]["rtt_ms"] > 0
    assert 0 <= s["link"]["last_ack_age_s"] < 30
    assert s["journal"]["state"] == "ok" and s["journal"]["file_bytes"] > 0
    gps = s["sources"]["gps"]
    assert gps["state"] == "fix" and gps["emitted"] > 0
    assert s["accepted"] >= s["link"]["readings_acked"]

    # the agent reports its status to the backend, which keeps the latest (protocol.md §3)
    # the first report may predate the first fix: a later one (every 1 s here) carries it
    def reported_with_fix() -> dict | None:
        row = _backend_status(procs.db_path, "truck-st")
        return row if row is not None and row.get("sources") == {"gps": "fix"} else None
    reported = wait_for(reported_with_fix, 30, "a status row with the GPS fix in the backend")
    assert reported["sources"] == {"gps": "fix"} and reported["journal_bytes"] > 0
    assert reported["backlog"] >= 0 and reported["uptime_s"] >= 0

    text = _status(sock)
    assert text.returncode == 0, text.stderr
    assert "link     connected" in text.stdout and "source   gps: fix" in text.stdout

    # written on the agent's 10 s status tick
    up = 'fleet_agent_link_up{vehicle="truck-st"} 1.0'
    wait_for(lambda: prom.exists() and up in prom.read_text(), 30, "prometheus textfile")
    metrics = prom.read_text()
    assert "fleet_agent_journal_backlog" in metrics

    # the gateway goes away: the backlog the agent reports is what its journal holds
    backend.kill9()

    def backlog_reported() -> bool:
        s = _snap(sock)
        # (the link may still say connected: QUIC's idle timeout is minutes, docs/protocol.md)
        return s["link"]["last_ack_age_s"] >= 3 and s["journal"]["backlog"] >= 3
    wait_for(backlog_reported, 60, "a backlog while disconnected")
    s = _snap(sock)
    on_disk = _pending_in_journal(procs.journal("truck-st"))
    # readings keep arriving at 5/s between the two reads: equal within one commit's worth
    assert abs(s["journal"]["backlog"] - on_disk) <= 5, (s["journal"], on_disk)
    assert s["journal"]["oldest_unsent_age_s"] > 0
    assert agent.stop() == 0


def test_status_without_an_agent_says_so(tmp_path):
    out = _status(tmp_path / "nobody.sock")
    assert out.returncode == 3
    assert "no answer" in out.stderr and "nobody.sock" in out.stderr


def test_sighup_reloads_decimation_and_log_level_and_names_what_needs_a_restart(procs):
    procs.provision("truck-hup")
    procs.backend()
    procs.gps_sim("truck-hup", rate=5)
    agent = procs.agent("truck-hup", "decimate = false\n")
    wait_for(lambda: "running: journal" in agent.text(), 20, "agent running")
    config = procs.tmp / "truck-hup.toml"
    text = config.read_text()
    config.write_text(text.replace(f"port = {procs.quic_port}", "port = 1")
                      .replace("decimate = false", "decimate = true\nmin_distance_m = 50.0")
                      + '\n[log]\nlevel = "debug"\n')
    agent.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reloaded" in agent.text(), 20, "the reload log line")
    log = agent.text()
    reloaded = next(line for line in log.splitlines() if "SIGHUP: reloaded" in line)
    assert "gps.decimate" in reloaded and "gps.min_distance_m" in reloaded
    assert "log.level" in reloaded
    restart = next(line for line in log.splitlines() if "needs `systemctl restart" in line)
    assert "server" in restart and "gps" not in restart.split(":", 3)[-1]
    # the new level is in force: DEBUG lines appear after the reload
    wait_for(lambda: " DEBUG " in agent.text().split("SIGHUP: reloaded", 1)[1], 20,
             "a DEBUG line after the reload")
    assert agent.alive()
    assert agent.stop() == 0


def _config(**sections) -> object:
    raw = {"vehicle": {"id": "v", "token": "t"},
           "server": {"host": "h", "ca_file": "/ca.pem"}, **sections}
    return parse_config(raw, "/etc/fleet-agent/agent.toml")


def test_reload_plan_splits_safe_changes_from_restarts():
    old = _config(gps={"device": "/dev/ttyACM0", "decimate": False},
                  can={"bus": [{"name": "truck", "channel": "can0", "signals": ["A"]}]})
    new = _config(gps={"device": "/dev/ttyUSB0", "decimate": True},
                  can={"bus": [{"name": "truck", "channel": "can1", "signals": ["A", "B"]}]},
                  log={"level": "debug"})
    p = plan(old, new)
    assert sorted(p.reload) == ["can.truck.signals", "gps.decimate", "log.level"]
    assert sorted(p.restart) == ["can.truck.channel", "gps.device"]
    renamed = _config(can={"bus": [{"name": "trailer"}]})
    assert plan(old, renamed).restart[-1].startswith("can (buses added")
    assert plan(old, old).reload == [] and plan(old, old).restart == []


def _record(msg: str, created: float, level=logging.WARNING, name="agent.gps.serial_source"):
    rec = logging.LogRecord(name, level, "/x.py", 10, msg, (), None)
    rec.created = created
    return rec


def test_rate_limit_passes_a_burst_then_counts_and_reports_the_suppressed():
    rl = logging_setup.RateLimit(window_s=60.0, burst=3)
    passed = [rl.filter(_record("device %s gone", 1000.0 + i)) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert rl.filter(_record("another message", 1001.0))  # a different call site text passes
    assert rl.filter(_record("info", 1002.0, level=logging.INFO))  # INFO is never limited
    after = _record("device %s gone", 1061.0)
    assert rl.filter(after)  # a new window
    assert "7 more like this suppressed" in after.msg and after.SUPPRESSED == 7
    assert rl.suppressed_total == 7


def test_journald_handler_under_systemd_with_vehicle_and_component_fields():
    assert logging_setup.under_systemd({"INVOCATION_ID": "abc"})
    assert logging_setup.under_systemd({"JOURNAL_STREAM": "8:123"})
    assert not logging_setup.under_systemd({})
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        handler = logging_setup.setup(logging.INFO, "truck-7", journald=True)
        from systemd.journal import JournalHandler
        assert isinstance(handler, JournalHandler)
        rec = _record("fix", 1.0, logging.INFO)
        assert all(f.filter(rec) for f in handler.filters)
        assert (rec.VEHICLE, rec.COMPONENT) == ("truck-7", "gps")
        plain = logging_setup.setup(logging.INFO, "truck-7", journald=False)
        assert not isinstance(plain, JournalHandler)
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    assert logging_setup.component("agent.uplink") == "uplink"
    assert logging_setup.component("geostream.session") == "geostream"


def test_reload_moves_the_new_can_selection_into_the_running_pipeline(tmp_path):
    import can

    from agent.daemon import build_sources
    from agent.reload import apply

    log = REPO / "tests" / "data" / "can" / "drive_20s.log"

    def config(signals: list[str]):
        return _config(can={"bus": [{"name": "truck", "interface": "replay",
                                     "replay": str(log), "dbc": ["truck_j1939.dbc"],
                                     "signals": signals}]})
    [running] = build_sources(config(["EngSpeed"]))
    pipeline = running.pipeline  # what the running pump holds on to
    frames = [m for m in can.LogReader(str(log))][:200]
    out: list = []
    for m in frames[:100]:
        pipeline.feed(m, round(m.timestamp * 1000), out.append)
    before = {k for r in out for k in r.values}
    frames_before = pipeline.decoder.counts["frames"]
    assert before == {"EngSpeed"}
    [fresh] = build_sources(config(["EngSpeed", "EngCoolantTemp"]))
    assert apply([running], [fresh]) == ["can:truck: selection"]
    assert running.pipeline is pipeline  # swapped inside, not replaced
    assert pipeline.decoder.counts["frames"] == frames_before  # the counters carried over
    out.clear()
    for m in frames[100:]:
        pipeline.feed(m, round(m.timestamp * 1000), out.append)
    assert {k for r in out for k in r.values} == {"EngSpeed", "EngCoolantTemp"}
