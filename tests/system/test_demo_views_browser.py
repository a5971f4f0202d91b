"""The Maintenance view (due list, scores over weeks, fuel ranking, fuel level and battery
charts) renders with the demo's data, arriving by the demo's own path: its GPS simulator and
its generated J1939 drive (hil/can_gen.py: engine hours, battery, ambient temperature, the
tachograph's driver card) replayed by real agents through the shipped DBC, over QUIC into a
backend configured as `make demo` configures it (hil/demo.py). The drive is 20 minutes of the
past hour fast-forwarded 50× (GNSS time in the NMEA, the CAN log's own times): long enough
for a score (20 km) in about 25 s. Debian chromium under the app's CSP
(selectors only); a screenshot is saved with the test's output."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from backend.store import open_store
from geostream.signalnames import NAMES
from hil import demo
from tests.browser import ConsoleErrors, launch, login, screenshot
from tests.conftest import wait_for

pytestmark = pytest.mark.browser

VEHICLES = ["truck-1", "truck-2"]
# what the views need from each vehicle's CAN bus before the browser looks
NEEDED = (NAMES.battery, NAMES.ambient, NAMES.engine_hours, NAMES.odometer, NAMES.fuel_level,
          NAMES.fuel_rate, NAMES.driver)
DRIVE_S = 1200  # GNSS seconds of driving; at 80 km/h on average 26 km, a score needs 20
TIME_SCALE = 50  # GNSS seconds per wall second, GPS and CAN alike
AGO_S = 3600  # the drive began this long ago (the GPS goes on until the test ends)
SPEED_KMH = 80
# DRIVE_S / TIME_SCALE = 20 s on a quiet machine; 55 s at load 17-19 (2 cores): a bound, not
# a timing
DATA_TIMEOUT_S = 150


def _arrived(db_path, start_ms: int) -> bool:
    """Every vehicle's drive is in the backend's store to its last minute, with every NEEDED
    signal."""
    if not db_path.exists():
        return False
    end_ms = start_ms + (DRIVE_S - 60) * 1000
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        for v in VEHICLES:
            for kind in ("pos", "can"):
                last = db.execute("SELECT max(time_ms) FROM vehicle_telemetry WHERE "
                                  "vehicle_id=? AND kind=?", (v, kind)).fetchone()[0]
                if last is None or last < end_ms:
                    return False
            for name in NEEDED:
                if db.execute("SELECT 1 FROM vehicle_telemetry WHERE vehicle_id=? AND "
                              "kind='can' AND json_type(data, ?) IS NOT NULL LIMIT 1",
                              (v, f'$."{name}"')).fetchone() is None:
                    return False
    return True


def _service_history(db_path) -> None:
    async def go():
        store = open_store(f"sqlite://{db_path}")
        await store.open()
        try:
            await demo.service_history(store, VEHICLES)
        finally:
            await store.close()

    asyncio.run(go())


def test_the_maintenance_view_renders_the_demos_data(procs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    procs.provision(*VEHICLES)
    _service_history(procs.db_path)
    procs.api_token("viewer")  # the user test-viewer with TEST_PASSWORD
    config = tmp_path / "backend.toml"
    config.write_text(demo.MAINTENANCE_TOML)
    procs.backend("--config", str(config))
    start_s = int(time.time()) - AGO_S
    demo.write_drive_logs(tmp_path, VEHICLES, DRIVE_S, start_s)
    sims = []
    for v in VEHICLES:
        sims.append(procs._spawn([
            "-m", "hil.gps_sim", "--link", str(procs.tty(v)), "--route", "ring", "--rate", "1",
            "--speed", str(SPEED_KMH), "--wait-reader", "--time-scale", str(TIME_SCALE),
            "--start-ago", str(AGO_S)], f"{v}.sim"))
        wait_for(lambda v=v: procs.tty(v).exists(), 10, "simulator pty")
        agent = demo.agent_config(v, procs.tokens[v], procs.pki["ca"], procs.quic_port,
                                  tmp_path, replay_speed=TIME_SCALE, past_drive=True)
        procs._spawn(["-m", "agent", "--config", str(agent)], f"{v}.agent")
    wait_for(lambda: _arrived(procs.db_path, start_s * 1000), DATA_TIMEOUT_S,
             "the demo's drives")
    for sim in sims:  # the drive is in: the browser gets the cores
        sim.stop()

    base = f"http://127.0.0.1:{procs.http_port}"
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1366, "height": 1500})
        errors = ConsoleErrors(page)
        login(page, base, "test-viewer")
        page.click("button[data-tab=maintenance]")
        page.wait_for_selector("#tab-maintenance[data-loaded=true]", timeout=30000)
        # every plan of make demo's TOML for both trucks, usage measured on their CAN bus
        due = page.locator("#maint-due tbody tr")
        expect(due).to_have_count(len(VEHICLES) * 3)
        text = page.inner_text("#maint-due")
        assert "odometer (CAN)" in text and "engine hours (CAN)" in text, text
        # scores over weeks (a score: more than 20 km; the simulator's route turns sharply at
        # its waypoints, harsh corners for the detector) and the fuel ranking (L/100 km by the
        # CAN fuel rate): a row per truck, and the chart
        scores = page.locator("#maint-scores tbody tr")
        expect(scores.first).to_be_visible()
        rows = [scores.nth(i).inner_text().split("\t") for i in range(scores.count())]
        assert {r[1] for r in rows} == set(VEHICLES), rows
        assert all(float(r[2]) >= 20 and 0 <= float(r[3]) <= 100 for r in rows), rows
        expect(page.locator("#chart-scores canvas")).to_have_count(1)
        fuel = page.locator("#maint-fuel tbody tr")
        expect(fuel).to_have_count(len(VEHICLES))
        for i in range(len(VEHICLES)):
            rank, vehicle, l100 = fuel.nth(i).inner_text().split("\t")[:3]
            assert rank == str(i + 1) and 10 < float(l100) < 80, (rank, vehicle, l100)
        # a truck's fuel level and its battery (the VEP1 signal the view charts by default)
        page.select_option("#maint-vehicle", "truck-2")
        page.wait_for_selector("#chart-fuel canvas")
        page.wait_for_selector("#chart-signal canvas")
        expect(page.locator("#chart-signal .u-title")).to_have_text(NAMES.battery)
        # who drove: each truck's tachograph card from its CAN bus, in the drivers' scorecards
        # ("" is the stretch before the first DI: the GPS began before the CAN replay)
        cards = page.request.get(base + "/api/driving/scorecards?by=driver").json()
        km = {r["driver"]: r["km"] for r in cards["scorecards"]}
        assert set(km) - {""} == {demo.driver_card(0), demo.driver_card(1)}, cards
        assert all(km[demo.driver_card(i)] > 0 for i in range(len(VEHICLES))), km
        shot = screenshot(page, tmp_path, "demo-maintenance")
        browser.close()
    assert shot.stat().st_size > 10_000
    assert not errors, errors
