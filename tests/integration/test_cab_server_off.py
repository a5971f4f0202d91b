"""The cab server that could not start (agent/cab/server.py): `fleet-agent cab pair` is told
so instead of getting a code for a server nobody can reach (or no answer at all)."""

from __future__ import annotations

from types import SimpleNamespace

from agent.cab.server import CabServer
from agent.config import CabConfig


async def test_no_code_while_the_cab_server_is_not_running(tmp_path):
    agent = SimpleNamespace(config=SimpleNamespace(
        vehicle_id="v1", journal=SimpleNamespace(path=str(tmp_path / "j.sqlite"))))
    server = CabServer(CabConfig(enabled=True, listen="127.0.0.1", port=0), agent)
    answer = await server.control({"op": "pair"})
    assert not answer["ok"] and "not running" in answer["error"]
    assert not server.pairing.outstanding(0.0)
    assert (await server.control({"op": "nonsense"}))["ok"] is False
