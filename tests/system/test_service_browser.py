"""A dispatcher records a service from the vehicle panel's form (Debian chromium, under the
app's Content-Security-Policy: selectors only, no evaluated predicates) against a real
backend: a refused entry shows the server's reason, a good one lands in the panel's history
and in the REST API's, and recording the service of a due plan closes its open `service` alert
(the alert list shows it closed, pushed live, and the REST API agrees)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.browser import ConsoleErrors, launch, login, screenshot

pytestmark = pytest.mark.browser

CONFIG = """
[maintenance]
check_every_s = 1

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


def _api(base: str, token: str, path: str, body: dict | None = None):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}",
                                                       "Content-Type": "application/json"},
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
        return json.loads(resp.read())


def test_record_a_service_from_the_vehicle_panel(procs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    procs.provision("truck-1")
    token = procs.api_token("dispatcher")  # the user test-dispatcher with TEST_PASSWORD
    config = tmp_path / "backend.toml"
    config.write_text(CONFIG)
    procs.backend("--config", str(config))
    base = f"http://127.0.0.1:{procs.http_port}"
    # last year's inspection, entered from paper: 360 of 365 days used, so the plan is due and
    # the backend's check (every second) opens its `service` alert
    last_year = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 360 * 86_400))
    _api(base, token, "/api/vehicles/truck-1/services",
         {"interval": "inspection", "time": last_year, "who": "paper"})
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        errors = ConsoleErrors(page)
        login(page, base, "test-dispatcher")
        page.click("button[data-tab=alerts]")
        open_alert = "#alert-list li.alert.open[data-rule=service][data-vehicle=truck-1]"
        page.wait_for_selector(open_alert)
        page.click("button[data-tab=vehicles]")
        page.click("#vehicles li[data-vehicle='truck-1'] button")
        page.wait_for_selector("#panel:not([hidden]) h2:text('truck-1')")
        page.wait_for_selector("#service-history li:has-text('paper')")
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
        expect(page.locator("#service-history li")).to_have_count(2)
        text = page.inner_text("#service-history li >> nth=0")
        assert "oil" in text and "15230 km" in text and "Garage Nord" in text, text
        # the inspection done today: its alert closes at once, and the list shows it closed
        page.select_option("#service-interval", "inspection")
        page.fill("#service-work", "annual inspection")
        page.click("#service-record")
        page.wait_for_selector("#service-answer:text('1 alert closed')")
        page.click("button[data-tab=alerts]")
        page.wait_for_selector(
            "#alert-list li.alert.closed[data-rule=service][data-vehicle=truck-1]")
        expect(page.locator(open_alert)).to_have_count(0)
        screenshot(page, tmp_path, "service")
        browser.close()
    assert not errors, errors
    recs = _api(base, token, "/api/vehicles/truck-1/services")["services"]
    assert [r["interval"] for r in recs] == ["inspection", "oil", "inspection"]
    rec = recs[1]
    assert (rec["interval"], rec["odometer_km"], rec["work"], rec["cost"], rec["who"]) == (
        "oil", 15230.0, "oil and filter", 180.5, "Garage Nord")
    assert rec["time"].startswith("2026-11-30")
    alerts = _api(base, token, "/api/alerts?rule=service")["alerts"]
    assert [(a["subject"], a["state"]) for a in alerts] == [("inspection", "closed")]
