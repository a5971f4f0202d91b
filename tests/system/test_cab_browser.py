"""The in-cab tablet in Debian's chromium (docs/driver.md, "The in-cab tablet"): the driver app
opened from a real agent over HTTPS, the vehicle's certificate trusted by its SPKI pin (what
`fleet-agent cab pair` prints; chromium's --ignore-certificate-errors-spki-list is how a
managed tablet pins a key), paired with the one-time code, a stop completed with a drawn
signature: the service worker installs (a secure context), and the action is in the vehicle's
journal as an act reading, once; a route that reaches the vehicle shows in the open app."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import cbor2
import pytest

from agent.mailbox import Mailbox
from agent.vehicle_db import open_vehicle_db
from tests.browser import CHROMIUM, CHROMIUM_ARGS, ConsoleErrors, screenshot
from tests.conftest import REPO, _env, wait_for

pytestmark = pytest.mark.browser

WAIT_MS = 30_000  # the longest a step may take under load before the test fails


def cab(sock, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "agent", "cab", *args, "--json", "--socket",
                          str(sock)], capture_output=True, text=True, timeout=30, env=_env(),
                         cwd=REPO)
    return json.loads(out.stdout) if out.stdout else {}


def journaled_actions(journal) -> list[dict]:
    with sqlite3.connect(journal, timeout=10) as db:
        return [cbor2.loads(p)["action"] for (p,) in db.execute(
            "SELECT payload FROM readings WHERE kind='act' ORDER BY seq")]


def test_the_tablet_pins_the_vehicle_pairs_and_completes_a_stop(procs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    sock = tmp_path / "cab.sock"
    # no backend: the vehicle is out of reach, the tablet works from the vehicle alone
    config = procs.agent_config("van-9", token="t", extra=(
        f'\n[status]\nsocket = "{sock}"\n\n[cab]\nenabled = true\nlisten = "127.0.0.1"\n'
        f'port = 0\ntls_dir = "{tmp_path}"\n'))
    procs.gps_sim("van-9", rate=5, count=5000)
    procs._spawn(["-m", "agent", "--config", str(config)], "van-9.agent")
    wait_for(lambda: cab(sock, "devices").get("ok"), 30, "the agent's cab server")
    now = int(time.time() * 1000)

    def route_set(version: int, stops: tuple[str, ...]) -> None:
        """The route as route.set leaves it in the mailbox (tested end to end elsewhere)."""
        db = open_vehicle_db(str(procs.journal("van-9")))
        try:
            Mailbox(db).set_route({
                "route_id": "r9", "version": version, "status": "dispatched",
                "driver_id": "d1",
                "shift": {"start_ms": now - 3_600_000, "end_ms": now + 3_600_000},
                "stops": [{"job_id": j, "name": f"Stop {j}", "address": f"Pier {j}",
                           "lat": 60.17, "lon": 24.94, "windows": [], "service_s": 300,
                           "notes": "", "contact": {}, "arrival_ms": now} for j in stops]},
                int(time.time() * 1000))
        finally:
            db.close()

    route_set(1, ("s1",))
    paired = cab(sock, "pair")
    expect.set_options(timeout=WAIT_MS)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                *CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={paired['pin']}"])
            ctx = browser.new_context(viewport={"width": 800, "height": 1000})
            ctx.set_default_timeout(WAIT_MS)
            page = ctx.new_page()
            errors = ConsoleErrors(page)
            errors.allowed += ["401"]  # the app's first look before pairing
            origin = paired["url"].split("/pair")[0]
            page.goto(origin + "/driver/")
            page.wait_for_url("**/login?next=/driver/")
            page.fill("[data-testid=code]", paired["code"])
            page.click("[data-testid=pair]")
            page.wait_for_url("**/driver/")
            stop = page.locator("[data-testid=stop-s1]")
            expect(stop).to_contain_text("Pier s1")
            expect(page.locator("#title")).to_contain_text("van-9")
            # a secure context: the service worker (the app offline) is installed
            page.wait_for_selector("body[data-offline-ready=true]", state="attached")
            page.click("[data-testid=complete-s1]")
            page.fill("#pod-recipient", "Ana")
            box = page.locator("#pod-signature").bounding_box()
            page.mouse.move(box["x"] + 20, box["y"] + 50)
            page.mouse.down()
            page.mouse.move(box["x"] + 200, box["y"] + 120)
            page.mouse.up()
            page.click("#pod-save")
            expect(page.locator("[data-testid=queue]")).to_have_text("all sent")
            expect(stop).to_have_attribute("data-state", "completed")
            page.reload()  # the state comes from the vehicle now, not the tablet's queue
            expect(stop).to_have_attribute("data-state", "completed")
            # dispatch adds a stop: the route reaches the vehicle, the open app shows it (its
            # live socket to the agent tells it; the app's own reads are done by then)
            page.wait_for_selector("body[data-ready=true]", state="attached")
            wait_for(lambda: cab(sock, "devices").get("live") == 1, 30, "the live socket")
            route_set(2, ("s1", "s2"))
            expect(page.locator("[data-testid=banner]")).to_contain_text("new stop: s2")
            expect(page.locator("[data-testid=stop-s2]")).to_have_count(1)
            screenshot(page, tmp_path, "cab-completed")
            browser.close()
        assert not errors, errors
    finally:
        expect.set_options(timeout=5_000)
    # the signature's parts (docs/protocol.md §4 "Images") journaled before the action
    *parts, action = journaled_actions(procs.journal("van-9"))
    assert (action["kind"], action["job_id"], action["device_seq"]) == ("complete", "s1", 1)
    assert action["pod"]["recipient"] == "Ana"
    assert parts and {p["kind"] for p in parts} == {"image.part"}
    assert {p["image"]["id"] for p in parts} == {action["pod"]["signature"]}
    assert parts[0]["image"]["kind"] == "signature"
    assert len(cab(sock, "devices")["devices"]) == 1
