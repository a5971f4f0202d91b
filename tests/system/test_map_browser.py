"""The dispatcher web app's live map in headless Chromium (Debian's, WebGL on SwiftShader),
fed by real agents through the backend: log in, see the vehicles drawn and moving."""

from __future__ import annotations

import pytest

from hil import roads
from tests.browser import ConsoleErrors, count_pixels, launch, login, screenshot
from tests.conftest import wait_for

pytestmark = pytest.mark.browser

MOVING_RGB = (0x1F, 0x9D, 0x55)  # web/src/livemap.js STATE_COLORS.moving


def test_map_shows_vehicles_moving(procs, tmp_path):
    from playwright.sync_api import sync_playwright

    procs.provision("truck-1", "truck-2")
    procs.api_token("viewer")  # creates the user test-viewer with TEST_PASSWORD
    procs.backend("--map-overlay", roads.write(str(tmp_path / "roads.geojson")))
    for i, v in enumerate(["truck-1", "truck-2"]):
        procs.gps_sim(v, rate=5, route=["harbour", "ring"][i])
        procs.agent(v)
    wait_for(lambda: len(procs.stored("truck-1")) > 3 and len(procs.stored("truck-2")) > 3,
             30, "positions stored")
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(bypass_csp=True, viewport={"width": 1366, "height": 768})
        errors = ConsoleErrors(page)
        login(page, f"http://127.0.0.1:{procs.http_port}", "test-viewer")
        page.wait_for_function("document.querySelectorAll('#vehicles li').length === 2",
                               timeout=15000)
        page.wait_for_function("document.querySelector('#conn').textContent === 'live'")
        # the vehicles move: truck-1's shown position changes between two looks
        where = ("() => { const v = fleetApp.fleet.vehicles.get('truck-1'); "
                 "return `${v.lon},${v.lat}`; }")
        first = page.evaluate(where)
        page.wait_for_function(f"was => ({where})() !== was", arg=first, timeout=10000)
        # both are drawn by WebGL as moving arrows (the layer renders them, the pixels show them)
        page.wait_for_function(
            "fleetApp.map.queryRenderedFeatures({layers: ['vehicle-arrow']}).length === 2",
            timeout=15000)
        assert count_pixels(page, "#map", MOVING_RGB) > 40
        # a viewer is not offered what viewers may not do
        page.click("#vehicles li button")
        page.wait_for_selector("#panel:not([hidden]) h2")
        assert page.locator("#command-send").count() == 0
        screenshot(page, tmp_path, "map")
        browser.close()
    assert not errors, errors
