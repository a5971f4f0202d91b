"""A dispatcher plans a day in the web app's Dispatch tab (Debian chromium, WebGL on
SwiftShader) against a real backend: a broken CSV file shows its problems by line and imports
nothing; the good one fills the jobs table; Plan shows the proposal; Approve assigns the jobs,
and the routes are drawn on the map in their vehicle's colour with numbered stops; once a route
is dispatched and its van (a real agent fed by the GPS simulator) drives, the stops' live ETAs
appear in the table as the hub pushes them; a job is moved to the other route in one action.
No console errors on the way."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.browser import ConsoleErrors, count_pixels, launch, login, screenshot

pytestmark = pytest.mark.browser

# Central Helsinki: a depot and eight stops a few hundred metres apart
DEPOT = {"lat": 60.1699, "lon": 24.9384}
STOPS = [(60.1675, 24.9525), (60.1710, 24.9410), (60.1642, 24.9402), (60.1730, 24.9500),
         (60.1660, 24.9300), (60.1720, 24.9300), (60.1750, 24.9380), (60.1630, 24.9480)]
FIRST_ROUTE_RGB = (229, 62, 62)  # web/src/dispatch.js COLOURS[0], #e53e3e


def _csv() -> str:
    rows = [f"s{i},Stop {i},{lat},{lon},5,10" for i, (lat, lon) in enumerate(STOPS, 1)]
    return "id,name,lat,lon,service_min,demand_kg\n" + "\n".join(rows) + "\n"


def _put(base: str, token: str, path: str, body: dict | None = None, method: str = "PUT"):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
        assert resp.status in (200, 201)
        return json.loads(resp.read() or b"null")


def test_import_plan_approve_and_see_routes(procs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from backend.dispatch.streetmap import cached_street_overlay
    from tests.integration.dispatch import helsinki

    procs.provision("van-1", "van-2")
    token = procs.api_token("dispatcher")  # the user test-dispatcher with TEST_PASSWORD
    streets = cached_street_overlay(helsinki.extract(), tmp_path / "streets")
    procs.backend("--map-overlay", str(streets))  # the street map built from the extract
    base = f"http://127.0.0.1:{procs.http_port}"
    _put(base, token, "/api/depots/dep", {"name": "Depot", "place": DEPOT})
    _put(base, token, "/api/vehicle-types/van", {"name": "Van", "capacity": {"kg": 60}})
    for v in ("van-1", "van-2"):
        _put(base, token, f"/api/dispatch-vehicles/{v}", {"type_id": "van", "depot_id": "dep"})
    good, bad = tmp_path / "jobs.csv", tmp_path / "broken.csv"
    good.write_text(_csv())
    bad.write_text("id,lat,lon\nok,60.17,24.94\nsea,91,24.94\n")
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(bypass_csp=True, viewport={"width": 1366, "height": 768})
        errors = ConsoleErrors(page)
        login(page, base, "test-dispatcher")
        page.click("[role=tab][data-tab=dispatch]")

        # a broken file: its problem by line, nothing imported
        errors.allowed.append("status of 400")  # the browser logs the import's 400
        page.set_input_files("#job-csv", str(bad))
        page.wait_for_selector("#import-errors li")
        assert page.inner_text("#import-errors li") == \
            "line 3 (sea): lat: a number within ±90, not 91.0"
        assert page.locator("#jobs tbody tr").count() == 0

        page.set_input_files("#job-csv", str(good))
        expect(page.locator("#jobs tbody tr[data-state=unassigned]")).to_have_count(8)

        # plan tomorrow's working day, 08:00–18:00 local: a proposal, then approve (today's
        # 00:00–23:00 left the planner only the rest of today, which starts at now: at 22:30
        # it served 4 of the 8 stops and the check below failed, as test_cli's did)
        tomorrow = time.strftime("%Y-%m-%d", time.localtime(time.time() + 86_400))
        page.fill("#shift-start", f"{tomorrow}T08:00")
        page.fill("#shift-end", f"{tomorrow}T18:00")
        page.click("#plan")
        page.wait_for_selector("#approve", timeout=60000)
        summary = page.inner_text("#proposal-summary")
        assert "8 stops" in summary and "0 left out" in summary, summary
        page.click("#approve")
        # the hub's dispatch topic (or the reload after approving) brings the assignment
        expect(page.locator("#jobs tbody tr[data-state=assigned]")).to_have_count(
            8, timeout=15000)
        assert page.locator("#routes-legend .legend").count() >= 1
        numbers = page.evaluate("""() => {
            const by = {};
            for (const f of fleetApp.dispatch.drawn.features)
                (by[f.properties.route] ??= []).push(Number(f.properties.n));
            return Object.values(by); }""")
        assert sum(map(len, numbers)) == 8  # every stop drawn, numbered 1… on its route
        assert all(n == list(range(1, len(n) + 1)) for n in numbers), numbers
        page.evaluate("""() => fleetApp.map.fitBounds([[24.925, 60.160], [24.956, 60.178]],
                                                       {animate: false})""")
        page.evaluate("""() => new Promise(done => fleetApp.map.loaded() ? done()
                                                  : fleetApp.map.once('idle', done))""")
        page.wait_for_timeout(500)
        assert count_pixels(page, "#map", FIRST_ROUTE_RGB) > 200  # the first vehicle's route
        # street names along the streets once zoomed in (drawn as images: no glyph server)
        page.evaluate("""() => fleetApp.map.jumpTo({center: [24.9425, 60.1685], zoom: 16.5})""")
        page.evaluate("""() => new Promise(done => fleetApp.map.loaded() ? done()
                                                  : fleetApp.map.once('idle', done))""")
        page.wait_for_function("""fleetApp.map.queryRenderedFeatures({layers:
            ['overlay-street-name-major', 'overlay-street-name-minor']}).length > 3""",
                               timeout=15000)
        names = page.evaluate("""() => [...new Set(fleetApp.map.queryRenderedFeatures({layers:
            ['overlay-street-name-major', 'overlay-street-name-minor']})
            .map(f => f.properties.name))]""")
        assert all(page.evaluate(f"() => fleetApp.map.hasImage({json.dumps('street:' + n)})")
                   for n in names), names
        screenshot(page, tmp_path, "dispatch")

        # dispatch van-1's route; its van drives (agent + simulated receiver): live ETAs
        route = _put(base, token, "/api/routes?vehicle=van-1", method="GET")["routes"][0]
        _put(base, token, f"/api/routes/{route['id']}",
             {**route, "status": "dispatched", "version": route["version"]})
        procs.gps_sim("van-1", rate=2)
        procs.agent("van-1")
        first = route["stops"][0]["job_id"]
        eta = page.locator(f"#jobs tbody tr[data-job={first}] td.eta")
        expect(eta).to_contain_text("±", timeout=30000)
        assert "basis" not in eta.inner_text() and eta.get_attribute("title")  # basis named
        etas = page.evaluate("() => [...fleetApp.dispatch.etas.keys()]")
        assert sorted(etas) == sorted(s["job_id"] for s in route["stops"])

        # move a job from the longer route onto the shorter one (60 kg, 10 kg a stop: it has
        # room) in one action, re-sequenced by the solver
        both = _put(base, token, "/api/routes", method="GET")["routes"]
        longer, shorter = sorted(both, key=lambda r: -len(r["stops"]))
        mover = longer["stops"][-1]["job_id"]
        page.select_option(f"#jobs tbody tr[data-job={mover}] select.move", shorter["id"])
        expect(page.locator(f"#jobs tbody tr[data-job={mover}] td:nth-child(3)")) \
            .to_have_text(shorter["id"], timeout=30000)
        browser.close()
    assert not errors, errors
