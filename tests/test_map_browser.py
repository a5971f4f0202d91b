"""The dispatcher map in headless Chromium (Debian's), fed by real agents through the backend."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .authhelp import TEST_PASSWORD
from .conftest import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# flags for a sandbox-less root container with no network (see docs/operations.md)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

pytestmark = pytest.mark.browser


def test_map_shows_vehicles_moving(procs, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium missing: `make test` installs Debian's chromium"
    procs.provision("truck-1", "truck-2")
    procs.api_token("viewer")  # creates the user test-viewer with TEST_PASSWORD
    procs.backend()
    for i, v in enumerate(["truck-1", "truck-2"]):
        procs.gps_sim(v, rate=5, route=["harbour", "ring"][i])
        procs.agent(v)
    wait_for(lambda: len(procs.stored("truck-1")) > 3 and len(procs.stored("truck-2")) > 3,
             30, "positions stored")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 750})
        page.goto(f"http://127.0.0.1:{procs.http_port}/")
        # no session: the map sends the browser to the login page
        page.wait_for_url("**/login", timeout=10000)
        page.fill("#username", "test-viewer")
        page.fill("#password", TEST_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"http://127.0.0.1:{procs.http_port}/", timeout=10000)
        page.wait_for_function("document.querySelectorAll('#vehicles li').length === 2",
                               timeout=15000)
        assert page.inner_text("#conn") == "live"
        first = page.evaluate("document.querySelector('#vehicles li .meta').textContent")
        page.wait_for_function(
            "t => document.querySelector('#vehicles li .meta').textContent !== t",
            arg=first, timeout=10000)
        # the markers are drawn: count pixels of the first vehicle's colour on the canvas
        blue = page.evaluate("""() => {
            const c = document.getElementById('map');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (d[i] === 0x15 && d[i + 1] === 0x65 && d[i + 2] === 0xc0) n++;
            return n; }""")
        assert blue > 30, f"first vehicle's marker/trail not drawn ({blue} pixels)"
        shot = tmp_path / "map.png"
        page.screenshot(path=str(shot))
        browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("FLEET_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["FLEET_SCREENSHOT_DIR"]) / "map.png")
