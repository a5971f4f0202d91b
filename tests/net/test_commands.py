"""Downlink commands (docs/protocol.md §3): same connection, acknowledged, at-least-once, de-dup."""

from __future__ import annotations

from geostream.messages import Command

from .rig import AgentRig, until


async def test_command_reaches_agent_and_is_acknowledged_once(gw, tmp_path):
    token = await gw.provision("cmd-1")
    # queued while the vehicle is offline: delivered when it connects
    first = gw.gateway.send_command("cmd-1", "ping", {"n": 1})
    agent = AgentRig(tmp_path / "a", "cmd-1", token, gw.host, gw.port, gw.pki["ca"]).start()
    try:
        await until(lambda: first in gw.gateway.command_results, 10, "first command answered")
        assert gw.gateway.command_results[first] == (True, "pong")
        unknown = gw.gateway.send_command("cmd-1", "self-destruct")
        await until(lambda: unknown in gw.gateway.command_results, 10, "unknown answered")
        assert gw.gateway.command_results[unknown][0] is False
        # a re-send (lost ack, reconnect) is answered again but never run twice
        (proto,) = gw.gateway.connections["cmd-1"]
        gw.gateway.pending_commands["cmd-1"] = {first: Command(first, "ping", {"n": 1})}
        gw.gateway.command_results.clear()
        proto.send_command(Command(first, "ping", {"n": 1}))
        await until(lambda: first in gw.gateway.command_results, 10, "repeat answered")
        assert [c for c in agent.uplink.commands_run if c[0] == first] == [(first, "ping")]
        assert not gw.gateway.pending_commands
        assert agent.uplink.stats.connects == 1
    finally:
        await agent.stop()


def test_backend_cli_command_round_trip(procs):
    import subprocess
    import sys

    from ..conftest import REPO, _env, wait_for

    procs.provision("cmd-cli")
    procs.backend()
    procs.gps_sim("cmd-cli", rate=10, count=20)
    procs.agent("cmd-cli")
    wait_for(lambda: len(procs.stored("cmd-cli")) >= 5, 30, "agent connected")
    out = subprocess.run(
        [sys.executable, "-m", "backend", "--http-port", str(procs.http_port), "command",
         "cmd-cli", "ping", "--args", '{"why": "test"}'],
        capture_output=True, text=True, timeout=40, env=_env(), cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert '"state": "answered"' in out.stdout and '"ok": true' in out.stdout
