"""The web app keeps up with 10,000 vehicles at 1 Hz (Debian chromium, WebGL on SwiftShader):
the counts by state are exact, the zoomed-out map shows clusters, and a followed vehicle moves
with the map. Positions go in where the gateway hands them to the hub (`Hub.position`), into the
real HTTP app (auth, /ws, hub batching) served on loopback. No timing is asserted: the figures
are bench/bench_browser.py's."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from backend.auth import accounts
from backend.hub import Hub, position_feature
from backend.store import open_store
from backend.web import make_app
from tests.authhelp import TEST_PASSWORD
from tests.browser import CHROMIUM, CHROMIUM_ARGS, READY

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VEHICLES = 10_000
PARKED_EVERY = 4  # every 4th vehicle stands still: 2,500 parked, 7,500 moving
SLICES = 10  # a tenth of the fleet every 100 ms, as the gateway would hand them over
CENTER = (53.55, 10.0)
FOLLOWED = "v00001"
STEP_S = 60  # bound on every browser call


def homes():
    return [(f"v{i:05d}", CENTER[0] + 0.3 * ((i * 7919) % 1000 / 1000 - 0.5),
             CENTER[1] + 0.5 * ((i * 104729) % 1000 / 1000 - 0.5)) for i in range(VEHICLES)]


async def feed(hub: Hub, fleet, seconds: float, t0: float) -> None:
    """Every vehicle once a second for `seconds`; moving ones drive east at 60 km/h."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for part in range(SLICES):
            now_ms = time.time_ns() // 1_000_000  # fix ages are judged by the browser's clock
            km = (time.monotonic() - t0) / 60  # 60 km/h: a kilometre a minute
            for i in range(part, VEHICLES, SLICES):
                vid, lat, lon = fleet[i]
                parked = i % PARKED_EVERY == 0
                east = 0.0 if parked else km / (111.3 * math.cos(math.radians(lat)))
                hub.position(vid, now_ms, position_feature(
                    vid, now_ms, lat, lon + east, 0.0 if parked else 60.0, 90.0, 1))
            await asyncio.sleep(1 / SLICES)


async def session(tmp_path):
    from aiohttp import web
    from playwright.async_api import async_playwright

    store = open_store(f"sqlite://{tmp_path / 'fleet.db'}")
    await store.open()
    await accounts.add_user(store, "test-dispatcher", "dispatcher", TEST_PASSWORD,
                            all_vehicles=True)
    # provisioned, so that its panel reads it from the API; with no QUIC link to the gateway
    # the API says it is not connected, so it counts as offline (the others only stream)
    await store.add_vehicle(FOLLOWED)
    hub = Hub()
    runner = web.AppRunner(make_app(hub, store, lambda: {"hub": hub.stats()}), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    fleet = homes()
    t0 = time.monotonic()
    errors: list[str] = []
    try:
        async with async_playwright() as p:
            b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await b.new_page(bypass_csp=True, viewport={"width": 1366, "height": 768})
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))

            async def ev(js, arg=None):
                return await asyncio.wait_for(page.evaluate(js, arg), STEP_S)

            async def until(js, arg=None, seconds=STEP_S):
                """Feed while waiting for `js` to hold in the page."""
                waiter = asyncio.ensure_future(page.wait_for_function(
                    js, arg=arg, timeout=seconds * 1000, polling=500))
                while not waiter.done():
                    await feed(hub, fleet, 1, t0)
                await waiter

            await page.goto(f"http://127.0.0.1:{port}/login")
            await page.fill("#username", "test-dispatcher")
            await page.fill("#password", TEST_PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_function(READY, timeout=STEP_S * 1000)
            # every vehicle arrives and is counted in its state
            await until(f"fleetApp.fleet.vehicles.size === {VEHICLES}")
            parked = VEHICLES // PARKED_EVERY
            await until("""([moving, parked]) => {
                const n = (s) => Number(document.querySelector(`#counts [data-state=${s}] b`)
                                        ?.textContent);
                return n('moving') === moving && n('parked') === parked && n('stale') === 0
                       && n('offline') === 1 && n('alert') === 0; }""",
                        [VEHICLES - parked - 1, parked])
            # zoomed out, the map draws clusters, not 10,000 single markers
            await ev(f"fleetApp.map.jumpTo({{center: [{CENTER[1]}, {CENTER[0]}], zoom: 9}})")
            await until("fleetApp.map.queryRenderedFeatures({layers: ['clusters']}).length > 0")
            # follow a vehicle on the move: the map centres on it and moves with it
            await page.fill("#vehicle-search", FOLLOWED)
            await page.click(f"#vehicles li[data-vehicle={FOLLOWED}] button")
            await page.wait_for_selector("#panel:not([hidden]) #follow", timeout=STEP_S * 1000)
            await page.click("#follow")
            await until("(id) => fleetApp.live.following === id", FOLLOWED)
            await until("fleetApp.map.getZoom() >= 12 && !fleetApp.map.isMoving()")
            first = await ev("[fleetApp.map.getCenter().lng, fleetApp.map.getZoom()]")
            assert first[1] >= 12, first  # followed vehicles are shown single, not clustered
            await until("(lng) => fleetApp.map.getCenter().lng > lng + 1e-5", first[0])
            gap = await ev(f"""() => {{
                const v = fleetApp.fleet.vehicles.get('{FOLLOWED}');
                const p = fleetApp.fleet.shown(v, Date.now());
                const c = fleetApp.map.getCenter();
                return fleetApp.map.project(c).dist(fleetApp.map.project([p.lon, p.lat])); }}""")
            assert gap < 5, gap  # pixels between the map's centre and the followed vehicle
            # it is drawn single (a dot: offline) in the live source
            await until(f"""fleetApp.map.queryRenderedFeatures({{layers: ['vehicle-dot']}})
                            .some((f) => f.properties.id === '{FOLLOWED}')""")
            await b.close()
    finally:
        await runner.cleanup()
        await store.close()
    return errors


def test_ten_thousand_vehicles_keep_updating(tmp_path):
    errors = asyncio.run(session(tmp_path))
    assert not errors, errors
