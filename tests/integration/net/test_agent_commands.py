"""The agent's commands (docs/protocol.md §3) against a real agent process and backend: the
advertised set and what the API offers and refuses, each command's answer, exactly-once effects
across kill -9 (`restart`), and config.set's rollback (a change that breaks the link is rolled
back; a confirmed one stays through an outage)."""

from __future__ import annotations

import json
import signal
import sqlite3
import urllib.error
import urllib.request

import pytest

from tests.conftest import wait_for


def http(procs, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{procs.http_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {procs.token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def send(procs, vehicle: str, name: str, args: dict | None = None) -> int:
    status, body = http(procs, "POST", f"/api/vehicles/{vehicle}/commands",
                        {"name": name, "args": args or {}})
    assert status == 202, body
    return body["id"]


def answer(procs, cid: int, timeout: float = 30) -> dict:
    return wait_for(lambda: (c := http(procs, "GET", f"/api/commands/{cid}")[1])["state"]
                    == "answered" and c, timeout, f"answer to command {cid}")


def events(procs, vehicle: str, name: str) -> list[dict]:
    with sqlite3.connect(procs.db_path, timeout=10) as db:
        rows = db.execute("SELECT data FROM vehicle_telemetry WHERE vehicle_id=? AND kind='evt' "
                          "ORDER BY seq", (vehicle,)).fetchall()
    return [e for e in (json.loads(d) for (d,) in rows) if e.get("name") == name]


def vehicle_rows(journal, sql: str) -> list[tuple]:
    with sqlite3.connect(journal, timeout=10) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def fleet(procs):
    procs.provision("cmd-a", "cmd-z")  # cmd-z never connects
    procs.token = procs.api_token("dispatcher")
    procs.backend()
    procs.gps_sim("cmd-a", rate=5, count=3000)
    procs.agent_proc = procs.agent("cmd-a")
    wait_for(lambda: "restart" in {c["name"] for c in http(
        procs, "GET", "/api/vehicles/cmd-a/commands/offered")[1]["commands"]}, 30,
        "the agent's advertised set")
    return procs


def test_each_command_answers_and_the_api_offers_only_what_the_vehicle_runs(fleet):
    procs = fleet
    offered = {c["name"] for c in http(procs, "GET",
                                       "/api/vehicles/cmd-a/commands/offered")[1]["commands"]}
    assert {"ping", "position.now", "config.get", "config.set", "restart", "message",
            "route.set", "dtc.read", "dtc.clear", "journal.flush", "report.interval",
            "obd.query"} <= offered
    # a vehicle that never connected runs what every agent runs: ping
    status, body = http(procs, "POST", "/api/vehicles/cmd-z/commands", {"name": "restart"})
    assert status == 409 and "does not run" in body["error"]
    status, body = http(procs, "POST", "/api/vehicles/cmd-a/commands",
                        {"name": "dtc.clear", "args": {"bus": "car", "confirm": False}})
    assert status == 400 and "confirm" in body["error"]
    status, _ = http(procs, "POST", "/api/vehicles/cmd-a/commands",
                     {"name": "message", "args": {"text": "x" * 1001, "message_id": 1}})
    assert status == 400

    wait_for(lambda: procs.stored("cmd-a"), 30, "a first position")
    pos = answer(procs, send(procs, "cmd-a", "position.now"))
    assert pos["ok"] and -90 <= pos["result"]["position"]["lat"] <= 90
    assert pos["result"]["age_ms"] >= 0

    got = answer(procs, send(procs, "cmd-a", "config.get"))
    assert got["ok"] and got["result"]["config"]["vehicle"]["token"] == "***"
    assert procs.tokens["cmd-a"] not in json.dumps(got)
    gps = answer(procs, send(procs, "cmd-a", "config.get", {"section": "gps"}))
    assert list(gps["result"]["config"]) == ["gps"]

    rates = answer(procs, send(procs, "cmd-a", "report.interval",
                               {"send_interval_ms": 5000, "for_s": 60}))
    assert rates["ok"] and rates["result"]["send_interval_ms"] == 5000

    flushed = answer(procs, send(procs, "cmd-a", "journal.flush"))
    assert flushed["ok"] and flushed["result"]["journal_bytes"] > 0

    assert answer(procs, send(procs, "cmd-a", "message",
                              {"text": "gate 4 please", "message_id": 17,
                               "sender": "dispatch"}))["detail"] == "delivered"
    route = {"route_id": "r5", "version": 2, "stops": [{"job_id": "j1", "address": "Pier 1"}]}
    assert answer(procs, send(procs, "cmd-a", "route.set", {"route": route}))["detail"] == \
        "stored version 2"
    older = answer(procs, send(procs, "cmd-a", "route.set",
                               {"route": {**route, "version": 1}}))
    assert older["detail"] == "kept version 2"
    no_can = answer(procs, send(procs, "cmd-a", "dtc.read"))
    assert not no_can["ok"] and "no CAN bus" in no_can["detail"]
    # the vehicle keeps what the driver needs, in its journal file
    journal = procs.journal("cmd-a")
    assert vehicle_rows(journal, "SELECT route_id, version FROM mailbox_routes") == [("r5", 2)]
    assert vehicle_rows(journal, "SELECT message_id, text FROM mailbox_messages") == [
        (17, "gate 4 please")]
    # every command the agent ran is in its record, answered
    names = [n for (n,) in vehicle_rows(
        journal, "SELECT name FROM command_log WHERE answered_ms IS NOT NULL ORDER BY id")]
    assert names.count("route.set") == 2 and "position.now" in names


def test_a_resent_restart_after_kill9_is_answered_from_the_record(fleet):
    procs = fleet
    agent = procs.agent_proc
    cid = send(procs, "cmd-a", "restart", {"reason": "test"})
    done = answer(procs, cid)
    assert (done["ok"], done["detail"]) == (True, "restarted")
    assert agent.alive(), "restarted in place (same process id)"
    assert agent.text().count("restarting: test") == 1
    # the answer was lost, as far as the backend knows; the agent is killed and comes back
    agent.kill9()
    with sqlite3.connect(procs.db_path, timeout=10) as db:
        db.execute("UPDATE commands SET answered_ms=NULL, ok=NULL, detail=NULL WHERE id=?",
                   (cid,))
    agent = procs.agent("cmd-a")
    again = answer(procs, cid)
    assert (again["ok"], again["detail"]) == (True, "restarted")
    assert agent.text().count("restarting: test") == 1, "not run a second time"
    assert "repeated: answered from the record" in agent.text()
    assert agent.alive()


def test_a_config_change_that_breaks_the_link_is_rolled_back(fleet, tmp_path):
    procs = fleet
    config = procs.tmp / "cmd-a.toml"
    before = config.read_text()
    # a port nobody serves: the agent restarts into a configuration that cannot connect
    cid = send(procs, "cmd-a", "config.set", {"toml": "[server]\nport = 9\n", "confirm_s": 10})
    wait_for(lambda: "port = 9" in config.read_text(), 20, "the new file written")
    assert (tmp_path / "cmd-a.toml.previous").read_text() == before
    rolled = wait_for(lambda: events(procs, "cmd-a", "config-rolled-back"), 90,
                      "the rollback reported")
    assert rolled[0]["command"] == cid
    assert config.read_text() == before
    state = answer(procs, cid)
    assert state["ok"] and "restarting" in state["detail"]
    assert vehicle_rows(procs.journal("cmd-a"), "SELECT key FROM agent_state") == []


def test_a_confirmed_config_change_survives_an_outage(fleet):
    procs = fleet
    config = procs.tmp / "cmd-a.toml"
    cid = send(procs, "cmd-a", "config.set", {"toml": '[log]\nlevel = "debug"\n',
                                              "confirm_s": 10})
    state = answer(procs, cid)
    assert state["ok"] and "reload" in state["detail"], state
    kept = wait_for(lambda: events(procs, "cmd-a", "config-kept"), 40, "the change confirmed")
    assert kept[0]["command"] == cid
    # confirmed: no rollback record is left that an outage could act on
    assert vehicle_rows(procs.journal("cmd-a"), "SELECT key FROM agent_state") == []
    backend = next(p for p in procs.procs if "backend" in p.popen.args)
    backend.stop(signal.SIGTERM)
    wait_for(lambda: "uplink: disconnected" in procs.agent_proc.text(), 30,
             "the agent lost the link")
    procs.backend()
    wait_for(lambda: procs.agent_proc.text().count("uplink: connected") >= 2, 60,
             "the agent back")
    assert 'level = "debug"' in config.read_text()
    assert not events(procs, "cmd-a", "config-rolled-back")
