"""Arrivals detected on the vehicle, end to end through real processes: a route delivered by
`route.set`, then an uplink blackout (hil/ link emulator) while the GPS simulator (a pty)
drives into the stop, parks and leaves. The agent's own detector journals the arrival and the
departure; when the link returns each becomes exactly one job transition, by the vehicle, at
the device time of the first fix inside the stop — although the backend's detector sees the
same fixes then (docs/dispatch.md "Detection on the vehicle")."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3

import cbor2

from geostream.arrivals import distance_m
from hil.linkemu import LinkEmulator
from tests.conftest import wait_for
from tests.integration.net.test_agent_commands import http
from tests.integration.net.test_route_mailbox import (  # noqa: F401 (a fixture)
    emulator,
    import_jobs,
    route_body,
    wait_connected,
)

STOP = (60.1700, 24.9400)
# 150 m south of the stop → the stop (parked 8 s) → 150 m north; --speed 72 km/h: 20 m/s
POINTS = [[60.16865, 24.9400], list(STOP), [60.17135, 24.9400]]
CSV = ("id,name,lat,lon,window_start,window_end,service_min,demand_kg\n"
       f"a,Harbour office,{STOP[0]},{STOP[1]},,,5,10\n")
DWELL_S = 3
RATE = 5
FIXES = 25 * RATE  # ~7 s in, 8 s parked, ~4 s out past 75 m, and time to settle the dwell
# played 4× faster than GNSS time (hil/gps_sim.py --time-scale), from a minute ago


def in_emulator(loop, fn, *args) -> None:
    """Call `fn` on the emulator's loop and return once it ran (the blackout is in force
    before the drive starts)."""
    async def call():
        fn(*args)

    asyncio.run_coroutine_threadsafe(call(), loop).result(10)


def journaled_detections(journal) -> list[dict]:
    with sqlite3.connect(journal, timeout=10) as db:
        return [a for a in (cbor2.loads(p)["action"] for (p,) in db.execute(
            "SELECT payload FROM readings WHERE kind='act' ORDER BY seq"))
            if a["kind"].endswith("-detected")]


def transitions(db_path, job: str) -> list[tuple]:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT to_state, at_ms, actor_kind, actor_id FROM job_transitions "
                          "WHERE job_id=? ORDER BY seq", (job,)).fetchall()


def test_an_arrival_in_a_blackout_reaches_the_store_once_with_the_vehicles_time(
        procs, emulator, tmp_path):  # noqa: F811
    loop, holder = emulator
    procs.provision("mb-1")
    procs.token = procs.api_token("dispatcher")
    procs.backend("--arrival-dwell-s", str(DWELL_S))
    emu = holder["emu"] = asyncio.run_coroutine_threadsafe(
        LinkEmulator(("127.0.0.1", procs.quic_port)).start(), loop).result(10)
    config = procs.agent_config("mb-1")
    config.write_text(config.read_text().replace(f"port = {procs.quic_port}",
                                                 f"port = {emu.address[1]}"))
    route_file = tmp_path / "drive.json"
    route_file.write_text(json.dumps({"points": POINTS, "dwell": [[1, 8]]}))
    sim = procs._spawn(["-m", "hil.gps_sim", "--link", str(procs.tty("mb-1")), "--rate",
                        str(RATE), "--record", str(procs.record("mb-1")), "--route-file",
                        str(route_file), "--speed", "72", "--count", str(FIXES),
                        "--time-scale", "4", "--start-ago", "60",
                        "--wait-reader"], "mb-1.sim")
    wait_for(lambda: procs.tty("mb-1").exists(), 10, "simulator pty")
    sim.popen.send_signal(signal.SIGSTOP)  # the vehicle waits at its start until dispatched
    agent = procs._spawn(["-m", "agent", "--config", str(config)], "mb-1.agent")
    try:
        wait_connected(procs, "mb-1")
        import_jobs(procs, CSV)
        status, _ = http(procs, "PUT", "/api/drivers/d1", {"display_name": "Aino"})
        assert status == 201
        status, route = http(procs, "PUT", "/api/routes/r1", route_body(("a",)))
        assert status == 201, route

        def delivered():
            return [c for c in http(procs, "GET", "/api/vehicles/mb-1/commands")[1][
                "commands"] if c["name"] == "route.set" and c["state"] == "answered"]

        wait_for(delivered, 60, "the route on the vehicle")
        in_emulator(loop, emu.blackout, 600.0)  # the link is gone until cleared
        sim.popen.send_signal(signal.SIGCONT)
        assert sim.popen.wait(60) == 0, "the drive played"
        found = wait_for(lambda: [d["kind"] for d in journaled_detections(
            procs.journal("mb-1"))] == ["arrival-detected", "departure-detected"] or None,
            60, "the arrival and departure journaled on the vehicle")
        assert found
        assert [t[0] for t in transitions(procs.db_path, "a")] == ["assigned"]

        in_emulator(loop, emu.model.blackouts.clear)
        wait_for(lambda: [t[0] for t in transitions(procs.db_path, "a")][-1:] == [
            "completed"] or None, 90, "the departure recorded")
        fixes = [json.loads(line) for line in procs.record("mb-1").read_text().splitlines()]
        first_in = next(f["ts_ms"] for f in fixes
                        if distance_m(f["lat"], f["lon"], *STOP) <= 50)
        got = transitions(procs.db_path, "a")
        assert [(t[0], t[2], t[3]) for t in got[1:]] == [
            ("arrived", "vehicle", "mb-1"), ("completed", "vehicle", "mb-1")]
        assert got[1][1] == first_in, "at the vehicle's device time of the first fix inside"

        def stored_acts():
            with sqlite3.connect(procs.db_path, timeout=10) as db:
                return db.execute("SELECT count(*), count(DISTINCT seq) FROM vehicle_telemetry "
                                  "WHERE vehicle_id='mb-1' AND kind='act'").fetchone()

        # the transition is recorded in the batch's step before its commit: the readings
        # follow (each stored once)
        wait_for(lambda: stored_acts()[0] >= 2 or None, 30, "the detections' readings stored")
        assert stored_acts() == (2, 2)
    finally:
        if sim.alive():
            sim.popen.send_signal(signal.SIGCONT)
    assert agent.stop() == 0
