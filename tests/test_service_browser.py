"""A dispatcher records a service from the vehicle panel's form (Debian chromium, under the
app's Content-Security-Policy: selectors only, no evaluated predicates) against a real
backend: a refused entry shows the server's reason, a good one lands in the panel's history
and in the REST API's."""

from __future__ import annotations

import json
import urllib.request

import pytest

from .browser import ConsoleErrors, launch, login, screenshot

pytestmark = pytest.mark.browser

CONFIG = """
[maintenance]
check_every_s = 3600

[[maintenance.interval]]
name = "oil"
by = "km"
every = 15000
due_within = 1000

[[maintenance.interval]]
name = "inspection"
by = "days"
every = 365
due_within = 30
"""


def test_record_a_service_from_the_vehicle_panel(procs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    procs.provision("truck-1")
    token = procs.api_token("dispatcher")  # the user test-dispatcher with TEST_PASSWORD
    config = tmp_path / "backend.toml"
    config.write_text(CONFIG)
    procs.backend("--config", str(config))
    base = f"http://127.0.0.1:{procs.http_port}"
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        errors = ConsoleErrors(page)
        login(page, base, "test-dispatcher")
        page.click("#vehicles li[data-vehicle='truck-1'] button")
        page.wait_for_selector("#panel:not([hidden]) h2:text('truck-1')")
        page.wait_for_selector("#service-history p:text('no service recorded')")
        page.wait_for_selector("#service-interval option[value=inspection]", state="attached")

        # the browser's own checks pass a number the API bounds more tightly: refused, shown
        errors.allowed.append("status of 400")  # the browser logs the refused POST
        page.select_option("#service-interval", "oil")
        page.fill("#service-date", "2999-01-01")
        page.click("#service-record")
        page.wait_for_selector("#service-answer:text('refused: time must be')")

        page.fill("#service-date", "2026-11-30")
        page.fill("#service-odometer", "15230")
        page.fill("#service-work", "oil and filter")
        page.fill("#service-cost", "180.5")
        page.fill("#service-who", "Garage Nord")
        page.click("#service-record")
        page.wait_for_selector("#service-answer:text('recorded #')")
        expect(page.locator("#service-history li")).to_have_count(1)
        text = page.inner_text("#service-history li")
        assert "oil" in text and "15230 km" in text and "Garage Nord" in text, text
        screenshot(page, tmp_path, "service")
        browser.close()
    assert not errors, errors
    req = urllib.request.Request(base + "/api/vehicles/truck-1/services",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
        [rec] = json.loads(resp.read())["services"]
    assert (rec["interval"], rec["odometer_km"], rec["work"], rec["cost"], rec["who"]) == (
        "oil", 15230.0, "oil and filter", 180.5, "Garage Nord")
    assert rec["time"].startswith("2026-11-30")
