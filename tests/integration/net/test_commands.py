"""Downlink commands (docs/protocol.md §3): same connection, acknowledged, at-least-once, de-dup,
kept in the store across backend restarts (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
import urllib.error
import urllib.request

import pytest

from backend.downlink import CommandRefused
from backend.store import open_store
from geostream.messages import Command
from tests.conftest import wait_for
from tests.integration.net.rig import AgentRig


async def answered(gw, command_id: int, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cmd = await gw.store.command(command_id)
        if cmd is not None and cmd.answered_ms is not None:
            return cmd
        await asyncio.sleep(0.05)
    raise AssertionError(f"command {command_id} not answered within {timeout:.0f}s")


async def test_command_reaches_agent_and_is_acknowledged_once(gw, tmp_path):
    token = await gw.provision("cmd-1")
    # queued while the vehicle is offline: delivered when it connects
    first = await gw.gateway.downlink.send("cmd-1", "ping", {"n": 1})
    assert (await gw.store.command(first)).sent_count == 0
    agent = AgentRig(tmp_path / "a", "cmd-1", token, gw.host, gw.port, gw.pki["ca"]).start()
    try:
        cmd = await answered(gw, first)
        assert (cmd.ok, cmd.detail, cmd.sent_count, cmd.args) == (True, "pong", 1, {"n": 1})
        # the registry refuses an unknown name before storing it (geostream/commands.py) ...
        with pytest.raises(CommandRefused):
            await gw.gateway.downlink.send("cmd-1", "self-destruct")
        # ... and an agent that does not know one it receives (a newer backend's) says so
        unknown = await gw.store.add_command("cmd-1", "self-destruct", {})
        assert unknown > first
        for proto in gw.gateway.connections["cmd-1"]:
            assert proto.send_command(Command(unknown, "self-destruct", {}))
        cmd = await answered(gw, unknown)
        assert cmd.ok is False and "unsupported" in cmd.detail
        assert await gw.store.pending_commands("cmd-1") == []
        # the ack was lost (as far as the store knows) and the command is re-sent: answered
        # again from the agent's memory, never run twice
        with sqlite3.connect(gw.db_path, timeout=10) as db:
            db.execute("UPDATE commands SET answered_ms=NULL, ok=NULL, detail=NULL WHERE id=?",
                       (first,))
        (proto,) = gw.gateway.connections["cmd-1"]
        assert proto.send_command(Command(first, "ping", {"n": 1}))
        cmd = await answered(gw, first)
        assert (cmd.ok, cmd.detail) == (True, "pong")
        assert [c for c in agent.uplink.commands_run if c[0] == first] == [(first, "ping")]
        # the first answer is the result; another vehicle cannot answer this one's command
        assert not await gw.store.answer_command("cmd-1", first, False, "late repeat", 0)
        assert not await gw.store.answer_command("other", unknown, True, "forged", 0)
        assert (await gw.store.command(unknown)).detail == "unsupported command 'self-destruct'"
        assert agent.uplink.stats.connects == 1
    finally:
        await agent.stop()


def test_backend_cli_command_round_trip(procs):
    import subprocess
    import sys

    from tests.conftest import REPO, _env

    procs.provision("cmd-cli")
    procs.token = procs.api_token("dispatcher")
    procs.backend()
    procs.gps_sim("cmd-cli", rate=10, count=20)
    procs.agent("cmd-cli")
    wait_for(lambda: len(procs.stored("cmd-cli")) >= 5, 30, "agent connected")
    out = subprocess.run(
        [sys.executable, "-m", "backend", "--http-port", str(procs.http_port), "command",
         "cmd-cli", "ping", "--args", '{"why": "test"}'],
        capture_output=True, text=True, timeout=40, env={**_env(), "FLEET_API_TOKEN": procs.token},
        cwd=REPO)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert (answer["state"], answer["ok"], answer["detail"]) == ("answered", True, "pong")
    assert answer["args"] == {"why": "test"} and answer["sent_count"] == 1
    with pytest.raises(urllib.error.HTTPError) as exc:  # a command nobody could ever answer
        http(procs, "POST", "/api/vehicles/no-such-truck/commands", {"name": "ping"})
    assert exc.value.code == 404


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, procs):
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return f"sqlite://{procs.db_path}"


def http(procs, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{procs.http_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {procs.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.load(r)


def test_command_survives_backend_restarts(procs, db_url):
    """Queued while the vehicle is offline; the backend is killed (-9) and restarted; the
    vehicle connects and answers; the result is still there after another (graceful) restart,
    and the answered command is not sent again."""
    async def provision() -> str:
        store = open_store(db_url)
        await store.open()
        try:
            return await store.add_vehicle("cmd-r")
        finally:
            await store.close()

    procs.tokens["cmd-r"] = asyncio.run(provision())
    procs.token = procs.api_token("admin", db=db_url)  # admin: /api/status
    backend = procs.backend("--db", db_url)
    status, body = http(procs, "POST", "/api/vehicles/cmd-r/commands",
                        {"name": "ping", "args": {"why": "restart"}})
    assert status == 202
    cid = body["id"]
    backend.kill9()
    backend = procs.backend("--db", db_url)
    _, state = http(procs, "GET", f"/api/commands/{cid}")
    assert (state["state"], state["sent_count"], state["vehicle"]) == ("pending", 0, "cmd-r")
    procs.gps_sim("cmd-r", rate=10, count=600)
    agent = procs.agent("cmd-r")
    state = wait_for(lambda: (s := http(procs, "GET", f"/api/commands/{cid}")[1])["state"]
                     == "answered" and s, 30, "command answered")
    assert (state["ok"], state["detail"], state["sent_count"]) == (True, "pong", 1)
    assert backend.stop(signal.SIGTERM) == 0
    backend = procs.backend("--db", db_url)
    _, after = http(procs, "GET", f"/api/commands/{cid}")
    assert after == state
    # the agent is back on the restarted backend: nothing is re-sent or run again
    wait_for(lambda: "cmd-r" in http(procs, "GET", "/api/status")[1]["vehicles_connected"], 30,
             "agent reconnected")
    time.sleep(0.5)
    assert http(procs, "GET", f"/api/commands/{cid}")[1]["sent_count"] == 1
    assert agent.text().count(f"command {cid} 'ping': ok=True pong") == 1
    assert agent.alive()
