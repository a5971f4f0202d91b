"""The SDK's own client against a real backend holding yesterday's stored readings: every tool
over streamable HTTP (Bearer token through the backend's access middleware) and over stdio
(`python -m backend mcp`), refusals without a token and with the wrong role, group visibility.
The "done when" questions: which trucks were in geofence Depot yesterday, which are due."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from backend.config import BackendConfig
from backend.service import Backend
from geostream.clock import wall_ms
from tests.authhelp import add_user_token, bearer
from tests.integration.mcptools.fleetdata import MAINTENANCE, load

REPO = Path(__file__).resolve().parents[3]
TOOLS = {"list_vehicles", "vehicle_state", "route", "trips", "who_was_in_geofence", "alerts",
         "acknowledge_alert", "signal_history", "send_command", "maintenance_status",
         "plan_routes", "route_etas", "eta_what_if", "list_geofences", "maintenance_due",
         "trouble_codes", "maintenance_forecasts", "driving_events", "driver_scorecards",
         "fuel", "list_subscriptions", "subscribe", "unsubscribe", "action_letters"}


@pytest.fixture
async def backend(db_url, pki, tmp_path):
    config = BackendConfig(db=db_url, quic_host="127.0.0.1", quic_port=0,
                           http_host="127.0.0.1", http_port=0, cert=pki["cert"],
                           key=pki["key"], ticket_file=str(tmp_path / "t.sqlite"),
                           maintenance=MAINTENANCE)
    b = Backend(config)
    await b.start()
    await load(b.store, wall_ms())
    b.tokens = {r: await add_user_token(b.store, r, r) for r in ("viewer", "dispatcher")}
    b.tokens["limited"] = await add_user_token(b.store, "limited", "viewer", all_vehicles=False)
    await b.store.put_group("north", ["truck-1", "truck-2"], ["limited"])
    # the Depot is the north group's geofence: the limited user sees it (and only its vehicles)
    depot = await b.store.geofence("depot")
    await b.store.put_geofence("depot", depot["name"], depot["area"], group="north")
    b.url = f"http://127.0.0.1:{b.http_port}/mcp"
    try:
        yield b
    finally:
        await b.stop()


def http_client(url: str, token: str) -> Client:
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(
        headers=bearer(token), timeout=30)))


async def call(client: Client, tool: str, **args) -> dict:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return result.structured_content


async def exercise(client: Client, dispatcher: bool) -> None:
    """List and call every tool; the answers come from the stored readings."""
    listed = (await client.list_tools()).tools
    assert {t.name for t in listed} == TOOLS
    # each tool documents its input and its output (backend/mcp/schemas.py)
    assert all(t.description and t.output_schema["properties"] for t in listed)
    route_in = next(t for t in listed if t.name == "route").input_schema["properties"]
    assert route_in["max_points"]["maximum"] == 500 and "UTC" in route_in["day"]["description"]
    vehicles = await call(client, "list_vehicles")
    assert [v["id"] for v in vehicles["vehicles"]] == ["truck-1", "truck-2", "truck-3"]
    depot = await call(client, "who_was_in_geofence", geofence="Depot", day="yesterday")
    assert depot["vehicles"] == ["truck-1", "truck-3"]
    assert depot["presence"][0]["positions_inside"] == 60
    due = await call(client, "maintenance_status", only_due=True)
    assert due["due_for_service"] == ["truck-1"]
    oil = next(s for s in due["vehicles"][0]["services"] if s["interval"] == "oil")
    assert (oil["state"], oil["used"], oil["source"]) == ("due", 95.0, "can-odometer")
    assert due["vehicles"][0]["trouble_codes"][0]["code"] == "SPN110-FMI0"
    listed = await call(client, "maintenance_due")
    assert [(d["vehicle"], d["interval"], d["state"]) for d in listed["due"]] == [
        ("truck-1", "oil", "due")]
    codes = await call(client, "trouble_codes", status="active")
    assert [(c["vehicle"], c["code"]) for c in codes["dtcs"]] == [("truck-1", "SPN110-FMI0")]
    assert (await call(client, "maintenance_forecasts"))["forecasts"] == []
    yesterday = await call(client, "driving_events", day="yesterday")
    assert yesterday["events"] == []  # truck-1's drive has no CAN engine speed nor a harsh
    cards = await call(client, "driver_scorecards", by="vehicle")
    assert "truck-1" in {r["vehicle"] for r in cards["scorecards"]}
    fuel = await call(client, "fuel", day="yesterday")
    assert {r["vehicle"] for r in fuel["rows"]} <= {"truck-1", "truck-2", "truck-3"}
    state = await call(client, "vehicle_state", vehicle="truck-1")
    assert state["can"]["HighResTotalVehicleDistance"]["value"] == 1095.0
    route = await call(client, "route", vehicle="truck-1", day="yesterday", max_points=30)
    assert 0 < route["points"] <= 30
    trips = await call(client, "trips", vehicle="truck-1", day="yesterday")
    assert trips["distance_km"] > 50
    hist = await call(client, "signal_history", vehicle="truck-1",
                      signal="HighResTotalVehicleDistance", day="yesterday", buckets=24)
    assert sum(b["n"] for b in hist["buckets"]) == 120
    assert hist["buckets"][0]["min"] == 1000.0 and hist["buckets"][-1]["max"] == 1095.0
    alerts = await call(client, "alerts", limit=10)
    assert isinstance(alerts["alerts"], list)
    fences = await call(client, "list_geofences")
    assert fences["geofences"][0]["name"] == "Depot"
    rules = json.loads((await client.read_resource("fleet://alert-rules")).contents[0].text)
    assert [i["name"] for i in rules["maintenance"]["intervals"]] == ["oil", "inspection"]
    letters = await client.call_tool("action_letters", {})
    assert letters.is_error and "needs role admin" in letters.content[0].text
    sent = await client.call_tool("send_command", {"vehicle": "truck-2", "name": "ping"})
    ack = await client.call_tool("acknowledge_alert", {"alert_id": 1})
    planned = await client.call_tool("plan_routes", {"start": "2026-12-07T08:00",
                                                     "end": "2026-12-07T16:00"})
    # no dispatch vehicles here (tests/integration/mcptools/test_plan.py has)
    assert planned.is_error
    if dispatcher:
        assert not sent.is_error and sent.structured_content["state"] == "pending"
        assert "needs role" not in planned.content[0].text
    else:
        assert sent.is_error and "needs role dispatcher" in sent.content[0].text
        assert ack.is_error and "needs role dispatcher" in ack.content[0].text
        assert "needs role dispatcher" in planned.content[0].text


async def test_every_tool_over_http(backend):
    async with http_client(backend.url, backend.tokens["dispatcher"]) as client:
        await exercise(client, dispatcher=True)
    assert [c.name for c in await backend.store.pending_commands("truck-2")] == ["ping"]


async def test_viewer_is_refused_dispatcher_tools_over_http(backend):
    async with http_client(backend.url, backend.tokens["viewer"]) as client:
        await exercise(client, dispatcher=False)
    assert await backend.store.pending_commands("truck-2") == []


async def test_an_admin_lists_the_dead_letters_of_vehicle_actions(backend):
    letter = {"vehicle_id": "truck-1", "epoch": 1, "seq": 7, "key": "tablet-0001:0007",
              "kind": "message", "action": {"key": "tablet-0001:0007", "kind": "message"},
              "taken_ms": 1, "state": "dead", "error": "KeyError: 'pod' [at x.py:1]",
              "failures": 5, "first_ms": 2, "last_ms": 3, "replayed_ms": None, "outcome": None}
    await backend.store.put_action_letter(letter)
    token = await add_user_token(backend.store, "root", "admin")
    async with http_client(backend.url, token) as client:
        assert (await call(client, "action_letters"))["letters"] == [letter]
        assert (await call(client, "action_letters", state="replayed"))["letters"] == []
        wrong = await client.call_tool("action_letters", {"state": "lost"})
        assert wrong.is_error and "state must be one of" in wrong.content[0].text


async def test_http_without_or_with_a_bad_token_is_401(backend):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with aiohttp.ClientSession() as http:
        for headers in ({}, bearer("not-a-token")):
            async with http.post(backend.url, json=body, headers=headers) as r:
                assert r.status == 401
                assert "tools" not in await r.text()


async def test_groups_limit_what_a_user_sees(backend):
    async with http_client(backend.url, backend.tokens["limited"]) as client:
        vehicles = await call(client, "list_vehicles")
        assert [v["id"] for v in vehicles["vehicles"]] == ["truck-1", "truck-2"]
        depot = await call(client, "who_was_in_geofence", geofence="depot", day="yesterday")
        assert depot["vehicles"] == ["truck-1"]
        hidden = await client.call_tool("vehicle_state", {"vehicle": "truck-3"})
        assert hidden.is_error and "unknown vehicle" in hidden.content[0].text


def _toml(db_url: str, path: Path) -> str:
    """The backend TOML the stdio server reads: the same store and [maintenance] table."""
    lines = [f"db = {json.dumps(db_url)}"]
    for iv in MAINTENANCE["interval"]:
        lines += ["[[maintenance.interval]]"] + [f"{k} = {json.dumps(v)}" for k, v in iv.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _stdio(config: str, token: str) -> StdioServerParameters:
    env = {**os.environ, "FLEET_API_TOKEN": token,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "backend", "--config", config, "mcp"], env=env,
                                 cwd=str(REPO))


async def test_every_tool_over_stdio(backend, tmp_path):
    config = _toml(backend.config.db, tmp_path / "backend.toml")
    async with Client(_stdio(config, backend.tokens["viewer"])) as client:
        await exercise(client, dispatcher=False)
    async with Client(_stdio(config, backend.tokens["dispatcher"])) as client:
        sent = await call(client, "send_command", vehicle="truck-1", name="ping")
    pending = await backend.store.pending_commands("truck-1")
    assert [c.id for c in pending] == [sent["id"]]


async def test_commands_a_vehicle_did_not_advertise_are_refused_alike_everywhere(backend,
                                                                               tmp_path):
    """The HTTP API, MCP over HTTP and MCP over stdio offer only the commands the vehicle
    advertised (truck-1 never connected: the 1.0 set, `ping`), with the same error, and store
    nothing (docs/protocol.md §3, the advertised set)."""
    token = backend.tokens["dispatcher"]
    async with aiohttp.ClientSession(headers=bearer(token)) as http:
        async with http.post(f"http://127.0.0.1:{backend.http_port}/api/vehicles/truck-1/"
                             "commands", json={"name": "restart"}) as r:
            assert r.status == 409
            refused = (await r.json())["error"]
    assert refused == ("bad command: vehicle 'truck-1' does not run 'restart' (it runs: "
                       "ping)")
    config = _toml(backend.config.db, tmp_path / "backend.toml")
    async with Client(_stdio(config, token)) as client:
        over_stdio = await client.call_tool("send_command", {"vehicle": "truck-1",
                                                             "name": "restart"})
        unknown = await client.call_tool("send_command", {"vehicle": "truck-1",
                                                          "name": "no.such"})
    async with http_client(backend.url, token) as client:
        over_http = await client.call_tool("send_command", {"vehicle": "truck-1",
                                                            "name": "restart"})
    for result in (over_stdio, over_http):
        assert result.is_error  # the SDK names the tool before the error
        assert result.content[0].text == f"Error executing tool send_command: {refused}"
    assert unknown.is_error and "bad command: " in unknown.content[0].text
    assert await backend.store.pending_commands("truck-1") == []


def test_stdio_refuses_a_bad_token(db_url):
    env = {**os.environ, "FLEET_API_TOKEN": "wrong"}
    p = subprocess.run([sys.executable, "-m", "backend", "--db", db_url, "mcp"], env=env,
                       cwd=REPO, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "not valid" in p.stderr
