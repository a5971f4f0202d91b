"""The Maintenance view renders with data (Debian chromium under the app's CSP: selectors
only): drives from hil/drives.py written into the backend's store — a battery decaying for ten
days, a day with a night drop, an idling hour and a refuel — show up as the due list, the
forecast ("reaches 12.0 V"), the fuel ranking and uPlot charts (scores over weeks, the fuel
level with its refuel and drop marked, the battery against its threshold). A screenshot is
saved."""

from __future__ import annotations

import asyncio
import time

import pytest

from backend.store import open_store
from tests.browser import ConsoleErrors, launch, login, screenshot
from tests.integration.api.test_maintenance_api import _fortnight, stored
from tests.unit.backend.driving.test_fuel import DAY, T0, day

pytestmark = pytest.mark.browser

CONFIG = """
[maintenance]
check_every_s = 3600

[[maintenance.interval]]
name = "oil"
by = "km"
every = 150
due_within = 50

[[maintenance.trend]]
signal = "BatteryPotential_PowerInput1"
threshold = 12.0
label = "resting battery voltage"
unit = "V"
rest_signal = "EngSpeed"
"""


def _load(db_path) -> None:
    now = int(time.time() * 1000)

    async def go():
        store = open_store(f"sqlite://{db_path}")
        await store.open()
        try:
            await store.add_vehicle("truck-1")
            await store.add_vehicle("truck-2")
            await store.write(stored("truck-1", _fortnight((now - 10 * DAY) // DAY * DAY,
                                                           -0.03, seed=1)), [])
            b = day()  # moved to yesterday
            shift = (now // DAY - 1) * DAY - T0
            d = b.drive
            d.positions = [{**p, "time_ms": p["time_ms"] + shift} for p in d.positions]
            d.signals = [(t + shift, s) for t, s in d.signals]
            await store.write(stored("truck-2", b), [])
        finally:
            await store.close()

    asyncio.run(go())


def test_the_maintenance_view_renders_tables_and_charts(procs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _load(procs.db_path)
    procs.api_token("viewer")  # the user test-viewer with TEST_PASSWORD
    config = tmp_path / "backend.toml"
    config.write_text(CONFIG)
    procs.backend("--config", str(config))
    base = f"http://127.0.0.1:{procs.http_port}"
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1366, "height": 1400})
        errors = ConsoleErrors(page)
        login(page, base, "test-viewer")
        page.click("button[data-tab=maintenance]")
        page.wait_for_selector("#tab-maintenance[data-loaded=true]", timeout=60000)
        # truck-2 drove ~150 km yesterday: its oil plan is due or overdue, first in the list
        expect(page.locator("#maint-due tbody tr")).to_have_count(2)
        assert page.inner_text("#maint-due tbody tr >> nth=0").startswith("truck-2")
        expect(page.locator("#maint-forecasts li")).to_contain_text(
            "resting battery voltage reaches 12.0 V in about")
        expect(page.locator("#maint-fuel tbody tr")).to_have_count(2)
        expect(page.locator("#chart-scores canvas")).to_have_count(1)
        # the fuel chart and the signal chart of truck-2, then truck-1's battery threshold
        page.select_option("#maint-vehicle", "truck-2")
        page.wait_for_selector("#chart-fuel canvas")
        expect(page.locator("#chart-fuel .u-legend")).to_contain_text("refuel")
        page.select_option("#maint-vehicle", "truck-1")
        page.wait_for_selector("#chart-signal canvas")
        expect(page.locator("#chart-signal .u-legend")).to_contain_text("threshold 12")
        shot = screenshot(page, tmp_path, "maintenance")
        browser.close()
    assert shot.stat().st_size > 10_000
    assert not errors, errors
