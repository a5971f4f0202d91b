"""The vehicle as the driver's mailbox, end to end through real processes: a route dispatched
while the vehicle is in a blackout (hil/ link emulator between agent and gateway) is stored as
a route.set command, survives a kill -9 of the agent meanwhile, and arrives when the link
returns; the vehicle keeps it across restarts, and a later version replaces it. Driver actions
taken on the vehicle in the blackout (the agent's control socket), a kill -9 in between, reach
the backend's one applier exactly once when the link returns."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
import urllib.request

import pytest

from agent.control import query
from hil.linkemu import LinkEmulator
from tests.conftest import wait_for
from tests.integration.net.test_agent_commands import http

T0 = 1_796_000_000_000
CSV = ("id,name,lat,lon,window_start,window_end,service_min,demand_kg\n"
       "a,Harbour office,60.17,24.94,2026-12-07T08:00Z,2026-12-07T10:00Z,5,10\n"
       "b,Depot B,60.18,24.95,,,3,20\n")


def wait_connected(procs, vehicle: str) -> None:
    """Until the agent of `vehicle` has connected (it advertised route.set)."""
    wait_for(lambda: "route.set" in {c["name"] for c in http(
        procs, "GET", f"/api/vehicles/{vehicle}/commands/offered")[1]["commands"]}, 30,
        "the agent connected through the emulator")


def import_jobs(procs, csv: str) -> None:
    """POST the jobs CSV as the dispatcher (procs.token)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{procs.http_port}/api/jobs/import", data=csv.encode(),
        method="POST", headers={"Content-Type": "text/csv",
                                "Authorization": f"Bearer {procs.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def route_body(stops, version=None):
    start = int(time.time() * 1000) - 3_600_000  # a shift under way: d1 drives mb-1 now
    body = {"vehicle_id": "mb-1", "shift": {"start_ms": start, "end_ms": start + 9 * 3_600_000},
            "start_depot": "dep", "stops": [{"job_id": s} for s in stops],
            "status": "dispatched", "driver_id": "d1"}
    if version is not None:
        body["version"] = version
    return body


@pytest.fixture
def emulator():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="linkemu", daemon=True)
    thread.start()
    holder = {}
    yield loop, holder
    if "emu" in holder:
        loop.call_soon_threadsafe(holder["emu"].close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def take_action(sock_path, n: int, kind: str, job: str) -> dict:
    """A driver's action through the agent's control socket, as the cab's app hands it over."""
    action = {"key": f"tablet-01-{n:0>6}", "device_id": "tablet-01", "device_seq": n,
              "kind": kind, "job_id": job, "route_id": "r1"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock_path))
        s.sendall(b"action " + json.dumps(action).encode() + b"\n")
        answer = b"".join(iter(lambda: s.recv(65536), b""))
    return json.loads(answer)


def answers(sock_path) -> bool:
    try:
        return query(str(sock_path))["vehicle"] == "mb-1"
    except OSError:  # the killed agent's socket file, nobody listening yet
        return False


def applied_actions(db_path) -> list[tuple]:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT key, device_seq, kind, via FROM driver_actions "
                          "ORDER BY device_seq").fetchall()


def routes_on_vehicle(journal) -> list[dict]:
    if not journal.exists():
        return []
    with sqlite3.connect(journal, timeout=10) as db:
        try:
            return [json.loads(b) for (b,) in db.execute(
                "SELECT body FROM mailbox_routes ORDER BY route_id")]
        except sqlite3.OperationalError:  # the agent has not made its tables yet
            return []


def test_a_route_dispatched_in_a_blackout_arrives_when_the_link_returns(procs, emulator):
    loop, holder = emulator
    procs.provision("mb-1")
    procs.token = procs.api_token("dispatcher")
    procs.backend()
    emu = holder["emu"] = asyncio.run_coroutine_threadsafe(
        LinkEmulator(("127.0.0.1", procs.quic_port)).start(), loop).result(10)
    sock = procs.tmp / "mb-1.sock"
    config = procs.agent_config("mb-1", extra=f'\n[status]\nsocket = "{sock}"\n')
    config.write_text(config.read_text().replace(f"port = {procs.quic_port}",
                                                 f"port = {emu.address[1]}"))
    status, _ = http(procs, "PUT", "/api/drivers/d1", {"display_name": "Aino"})
    assert status == 201

    def start_agent():
        return procs._spawn(["-m", "agent", "--config", str(config)], "mb-1.agent")

    procs.gps_sim("mb-1", rate=5, count=5000)
    agent = start_agent()
    wait_connected(procs, "mb-1")

    loop.call_soon_threadsafe(emu.blackout, 600.0)  # the link is gone until cleared
    import_jobs(procs, CSV)
    status, route = http(procs, "PUT", "/api/routes/r1", route_body(("a", "b")))
    assert status == 201, route

    def route_commands():
        return [c for c in http(procs, "GET", "/api/vehicles/mb-1/commands")[1]["commands"]
                if c["name"] == "route.set"]

    [cmd] = wait_for(route_commands, 10, "the route stored as a command")
    assert cmd["state"] == "pending"
    # the driver works on in the blackout: arrives and completes at a, the agent is killed,
    # comes back still cut off, and the driver arrives at b
    assert take_action(sock, 1, "arrive", "a")["ok"]
    assert take_action(sock, 2, "complete", "a")["ok"]
    agent.kill9()
    agent = start_agent()
    wait_for(lambda: answers(sock), 20, "the new agent's control socket")
    assert take_action(sock, 3, "arrive", "b")["ok"]
    assert take_action(sock, 4, "teleport", "b")["ok"], "judged by the applier, not the agent"
    assert not take_action(sock, "x", "arrive", "b")["ok"], "no device_seq: refused at once"
    assert routes_on_vehicle(procs.journal("mb-1")) == []
    assert applied_actions(procs.db_path) == []

    loop.call_soon_threadsafe(emu.model.blackouts.clear)
    wait_for(lambda: route_commands()[0]["state"] == "answered", 60, "the route delivered")
    [answered] = route_commands()
    assert (answered["ok"], answered["detail"]) == (True, "stored version 1")
    [kept] = routes_on_vehicle(procs.journal("mb-1"))
    assert (kept["route_id"], kept["version"], kept["status"]) == ("r1", 1, "dispatched")
    assert [(s["job_id"], s["name"]) for s in kept["stops"]] == [
        ("a", "Harbour office"), ("b", "Depot B")]
    assert kept["stops"][0]["windows"] and kept["stops"][0]["lat"] == 60.17
    # the actions: each applied once, in the driver's order, through the vehicle
    wait_for(lambda: len(applied_actions(procs.db_path)) >= 3, 30, "the actions applied")
    assert applied_actions(procs.db_path) == [
        ("tablet-01-000001", 1, "arrive", "vehicle"),
        ("tablet-01-000002", 2, "complete", "vehicle"),
        ("tablet-01-000003", 3, "arrive", "vehicle")]
    _, job_a = http(procs, "GET", "/api/jobs/a")
    assert job_a["state"] == "completed"
    with sqlite3.connect(procs.db_path, timeout=10) as db:  # the readings: each stored once
        acts = db.execute("SELECT seq FROM vehicle_telemetry WHERE vehicle_id='mb-1' "
                          "AND kind='act' ORDER BY seq").fetchall()
    assert len(acts) == 4 and len(set(acts)) == 4  # the unknown kind is kept, not applied

    # a new version replaces it on the vehicle, which keeps it across a restart
    status, _ = http(procs, "PUT", "/api/routes/r1", route_body(("b",), version=1))
    assert status == 200
    wait_for(lambda: [r["version"] for r in routes_on_vehicle(procs.journal("mb-1"))] == [2],
             30, "version 2 on the vehicle")
    assert agent.stop() == 0
    assert [s["job_id"] for s in routes_on_vehicle(procs.journal("mb-1"))[0]["stops"]] == ["b"]
