"""A dispatcher makes a tracking link in the web app's Dispatch tab (its URL and QR code), and
the customer opens it in Debian's chromium (Playwright), under the page's own
Content-Security-Policy, against a real backend app and store: while the vehicle serves an
earlier stop the page shows no position; once it heads to this stop the position appears
live (the link's own feed, no reload); an expired link answers 410, and so does one the
dispatcher revoked with the link box's Revoke button; another job's id (or
anything that is not a live token) answers 404. No console errors on the way."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request

import pytest
from aiohttp import web

from backend.hub import Hub, position_feature
from backend.store import open_store
from backend.web import make_app
from geostream.clock import wall_ms
from tests.authhelp import add_user_token
from tests.browser import ConsoleErrors, launch, login, screenshot

pytestmark = pytest.mark.browser
H = 3_600_000
STOPS = {"a": (60.1675, 24.9525), "b": (60.1710, 24.9410), "c": (60.1642, 24.9402)}


class Backend:
    """The backend's HTTP app on a real SQLite store, in its own thread and event loop."""

    def __init__(self, db: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.store, self.hub = open_store(f"sqlite://{db}"), Hub()
        self.run(self._start())

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self):
        await self.store.open()
        self.token = await add_user_token(self.store, "disp", "dispatcher")
        self.runner = web.AppRunner(make_app(self.hub, self.store, dict))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def _stop(self):
        await self.runner.cleanup()
        await self.store.close()

    def close(self):
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            return json.loads(resp.read())

    def position(self, lat: float, lon: float, t_ms: int) -> None:
        """What the gateway does with a committed position of van-1."""
        feature = position_feature("van-1", t_ms, lat, lon, 30.0, 90.0, 1)
        self.loop.call_soon_threadsafe(self.hub.position, "van-1", t_ms, feature)


@pytest.fixture
def backend(tmp_path):
    b = Backend(str(tmp_path / "fleet.db"))
    yield b
    b.close()


def test_customer_sees_the_vehicle_only_on_its_way(backend, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    now = wall_ms()
    backend.api("PUT", "/api/drivers/d1", {"display_name": "Aino Virtanen"})
    for jid, (lat, lon) in STOPS.items():
        backend.api("POST", "/api/jobs", {"id": jid, "name": f"Order {jid}",
                                          "place": {"lat": lat, "lon": lon,
                                                    "address": f"Street {jid}"}})
    backend.api("PUT", "/api/routes/r1", {
        "vehicle_id": "van-1", "shift": {"start_ms": now - H, "end_ms": now + 7 * H},
        "start_depot": "dep", "end_depot": "dep", "driver_id": "d1", "status": "dispatched",
        "stops": [{"job_id": j} for j in STOPS]})
    short = backend.api("POST", "/api/jobs/a/links", {"grace_s": 0})
    backend.position(60.1690, 24.9500, wall_ms())  # on its way to a, the earlier stop

    with sync_playwright() as p:
        browser = launch(p)
        disp = browser.new_page(bypass_csp=True, viewport={"width": 1280, "height": 800})
        disp_errors = ConsoleErrors(disp)
        disp_errors.allowed.append("status of 503")  # no planner in this app: its 503
        login(disp, backend.base, "disp")
        disp.click("[role=tab][data-tab=dispatch]")
        disp.click("#jobs tr[data-job=b] .make-link")
        disp.wait_for_selector("#tracking-link .link-qr")
        url = disp.input_value("#tracking-link .link-url")
        assert url.startswith(backend.base + "/t/"), url
        assert disp.evaluate("() => document.querySelector('#tracking-link .link-qr')"
                             ".naturalWidth") > 0  # the QR code's SVG drew
        screenshot(disp, tmp_path, "tracking-link-made")
        assert not disp_errors, disp_errors

        page = browser.new_page(viewport={"width": 420, "height": 860})  # under its CSP
        errors = ConsoleErrors(page)
        resp = page.goto(url)
        assert resp.status == 200
        page.wait_for_selector("body[data-ready=true]", state="attached", timeout=15000)
        expect(page.locator("#driver-name")).to_have_text("Aino")
        expect(page.locator("#headline")).to_have_text("Scheduled")  # a is ahead
        assert page.locator("#vehicle").is_hidden()
        assert page.locator("#vehicle").get_attribute("data-lat") is None

        backend.api("POST", "/api/jobs/a/transitions", {"to": "completed"})
        backend.position(60.1700, 24.9460, wall_ms() + 1000)  # left a, heading to b
        expect(page.locator("#vehicle")).to_be_visible(timeout=15000)
        assert page.locator("#vehicle").get_attribute("data-lat") == "60.17"
        assert "away" in page.inner_text("#distance")
        screenshot(page, tmp_path, "tracking-link")

        errors.allowed += ["status of 404", "status of 410"]
        assert page.goto(short["url"]).status == 410  # a is done and its grace was 0
        assert "expired" in page.inner_text("h1")
        base, token = url.rsplit("/", 1)
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        for other in ("c", "a", short["id"], wrong):
            assert page.goto(f"{base}/{other}").status == 404, other

        # the dispatcher revokes b's link in the link box: it answers 410 at once
        made = disp.get_attribute("#tracking-link", "data-link")
        disp.click(f"#tracking-link li[data-link={made}] .revoke-link")
        disp.wait_for_selector(f"#tracking-link li[data-link={made}][data-state=revoked]")
        assert disp.locator("#tracking-link .revoke-link").count() == 0  # b had one link
        assert page.goto(url).status == 410
        assert "expired" in page.inner_text("h1")
        assert not disp_errors, disp_errors
        browser.close()
    assert not errors, errors
