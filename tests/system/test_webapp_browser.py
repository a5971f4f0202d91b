"""A dispatcher's session in the web app (Debian chromium, WebGL on SwiftShader) against a real
backend and simulated vehicles: log in; the vehicles move; follow one; play its history back;
draw a geofence where it is about to pass and see the enter alert arrive; acknowledge it; send
a command and read the answer; log out and be refused. No console errors on the way."""

from __future__ import annotations

import math

import pytest

from hil import roads
from hil.gps_sim import ROUTES
from tests.browser import ConsoleErrors, launch, login, screenshot
from tests.conftest import wait_for

pytestmark = pytest.mark.browser

EARTH_R = 6_371_000.0
# the geofence's centre, along the route ahead of the vehicle, so that it is outside now and
# enters after the alert engine has re-read the geofences (every 30 s, backend/alerts/engine.py)
FENCE_AHEAD_M = 800
FENCE_RADIUS_M = 150
ALERTS_TOML = "[alerts.geofence]\ndwell_s = 2.0\n"  # the default 20 s dwell would slow the test


def _xy(origin, p):
    """Local metres east/north of `origin` (lat, lon): fine over a few kilometres."""
    k = math.cos(math.radians(origin[0]))
    return (math.radians(p[1] - origin[1]) * EARTH_R * k, math.radians(p[0] - origin[0]) * EARTH_R)


def point_ahead(route: str, lat: float, lon: float, ahead_m: float) -> tuple[float, float]:
    """The point `ahead_m` further along the closed route than the point nearest (lat, lon)."""
    pts = ROUTES[route] + ROUTES[route][:1]
    legs = list(zip(pts, pts[1:], strict=False))
    best = None
    for i, (a, b) in enumerate(legs):
        bx, by = _xy(a, b)
        px, py = _xy(a, (lat, lon))
        length2 = bx * bx + by * by
        f = max(0.0, min(1.0, (px * bx + py * by) / length2)) if length2 else 0.0
        d = math.hypot(px - f * bx, py - f * by)
        if best is None or d < best[0]:
            best = (d, i, f)
    _, i, f = best
    left = ahead_m + f * math.hypot(*_xy(*legs[i]))
    while True:
        a, b = legs[i % len(legs)]
        leg = math.hypot(*_xy(a, b))
        if left <= leg:
            g = left / leg
            return a[0] + (b[0] - a[0]) * g, a[1] + (b[1] - a[1]) * g
        left -= leg
        i += 1


def test_dispatcher_session(procs, tmp_path):
    from playwright.sync_api import sync_playwright

    procs.provision("truck-1", "truck-2")
    procs.api_token("dispatcher")  # the user test-dispatcher with TEST_PASSWORD
    config = tmp_path / "backend.toml"
    config.write_text(ALERTS_TOML)
    procs.backend("--config", str(config),
                  "--map-overlay", roads.write(str(tmp_path / "roads.geojson")))
    for v, route in (("truck-1", "harbour"), ("truck-2", "ring")):
        procs.gps_sim(v, rate=2, route=route)
        procs.agent(v)
    wait_for(lambda: len(procs.stored("truck-1")) > 2, 30, "positions stored")
    base = f"http://127.0.0.1:{procs.http_port}"
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(bypass_csp=True, viewport={"width": 1366, "height": 768})
        errors = ConsoleErrors(page)
        login(page, base, "test-dispatcher")
        page.wait_for_function("document.querySelectorAll('#vehicles li').length === 2",
                               timeout=15000)

        # the vehicles move
        where = ("() => { const v = fleetApp.fleet.vehicles.get('truck-1'); "
                 "return `${v.lon},${v.lat}`; }")
        first = page.evaluate(where)
        page.wait_for_function(f"was => ({where})() !== was", arg=first, timeout=10000)

        # follow truck-1: the map's centre stays on it while it drives on
        page.click("#vehicles li[data-vehicle='truck-1'] button")
        page.wait_for_selector("#panel:not([hidden]) h2:text('truck-1')")
        # the panel's fix quality from the API's Vehicle.fix (the simulator's GGA: GPS fix,
        # satellites, HDOP)
        page.wait_for_function("""() => [...document.querySelectorAll('#panel dt')].some(
            dt => dt.textContent === 'Fix quality' && /GPS .* sats .*HDOP/.test(
                dt.nextElementSibling.textContent))""", timeout=15000)
        page.click("#follow")
        page.wait_for_timeout(3000)
        gap = page.evaluate("""() => {
            const v = fleetApp.fleet.vehicles.get('truck-1');
            const p = fleetApp.fleet.shown(v, Date.now());
            const c = fleetApp.map.getCenter();
            return fleetApp.map.project(c).dist(fleetApp.map.project([p.lon, p.lat])); }""")
        assert gap < 30, f"the followed vehicle is {gap:.0f} px off the map's centre"
        screenshot(page, tmp_path, "follow")
        page.click("#follow")  # stop following: the map is ours again

        # history of the last hour, played back at 60x: the marker moves along the route
        page.click("#open-history")
        page.wait_for_selector("#history-summary", timeout=15000)
        points = int(page.inner_text("#history-summary").split()[0])
        assert points >= 2
        page.select_option("#history-rate", "60")
        start = int(page.eval_on_selector("#history-slider", "s => s.value"))
        page.click("#history-play")
        page.wait_for_function(f"Number(document.querySelector('#history-slider').value) > {start}"
                               " + 5000", timeout=10000)
        assert page.inner_text("#history-play").endswith("Pause") or \
            page.evaluate("!fleetApp.history.playback.playing")  # or it already reached the end
        marker = page.evaluate("fleetApp.history.markerAt")
        assert len(marker) == 2 and 9.9 < marker[0] < 10.1
        screenshot(page, tmp_path, "history")
        if page.evaluate("fleetApp.history.playback.playing"):
            page.click("#history-play")

        # a circle geofence just ahead of truck-1 on its route: the slow steps (clicks that
        # wait for the page) first, then the position, and the drawing with raw mouse events
        page.click("[data-tab=geofences]")
        page.click("#draw-circle")
        last = procs.sent("truck-1")[-1]  # where the simulator has put it now
        c_lat, c_lon = point_ahead("harbour", last["lat"], last["lon"], FENCE_AHEAD_M)
        edge_lat = c_lat + math.degrees(FENCE_RADIUS_M / EARTH_R)
        centre, edge = page.evaluate(f"""() => {{
            fleetApp.map.jumpTo({{center: [{c_lon}, {c_lat}], zoom: 15}});
            return [fleetApp.map.project([{c_lon}, {c_lat}]),
                    fleetApp.map.project([{c_lon}, {edge_lat}])]; }}""")
        box = page.locator("#map").bounding_box()
        page.mouse.click(box["x"] + centre["x"], box["y"] + centre["y"])
        page.mouse.move(box["x"] + edge["x"], box["y"] + edge["y"], steps=5)
        page.mouse.click(box["x"] + edge["x"], box["y"] + edge["y"])
        page.wait_for_selector("#geofence-save:not([disabled])")
        page.fill("#geofence-name", "Harbour gate")
        page.fill("#geofence-limit", "30")
        page.click("#geofence-save")
        page.wait_for_selector("#geofence-list li:has-text('Harbour gate')", timeout=10000)
        fence = page.evaluate("fleetApp.geofences.collection.features.find("
                              "f => f.properties.name === 'Harbour gate').properties")
        assert fence["speed_limit_kmh"] == 30
        assert abs(fence["circle"]["radius_m"] - FENCE_RADIUS_M) < 15
        screenshot(page, tmp_path, "geofence")

        # the enter alert arrives live; acknowledge it
        page.click("[data-tab=alerts]")
        entered = "#alert-list li[data-rule='geofence-enter'][data-vehicle='truck-1']"
        page.wait_for_selector(entered, timeout=120000)
        assert int(page.inner_text("#alert-count")) >= 1
        page.click(f"{entered} button.row")  # shows where and when
        page.wait_for_selector(".maplibregl-popup :text('geofence-enter')")
        screenshot(page, tmp_path, "alert")
        page.click(f"{entered} button.ack")
        page.wait_for_selector(f"{entered}.acked :text('acknowledged by test-dispatcher')")

        # send a command and read the agent's answer
        page.click("[data-tab=vehicles]")
        page.click("#vehicles li[data-vehicle='truck-1'] button")
        page.wait_for_selector("#command-send")
        page.fill("#command-name", "ping")
        page.click("#command-send")
        page.wait_for_function("document.querySelector('#command-answer').textContent"
                               ".includes(' ok')", timeout=30000)
        screenshot(page, tmp_path, "dispatcher")

        # log out: back to the login page, and the API refuses this browser
        assert not errors, errors
        errors.allowed.append("status of 401")
        page.click("#logout")
        page.wait_for_url("**/login", timeout=10000)
        page.goto(base + "/")
        page.wait_for_url("**/login**")
        status = page.evaluate("fetch('/api/vehicles').then(r => r.status)")
        assert status == 401
        browser.close()
    assert not errors, errors
