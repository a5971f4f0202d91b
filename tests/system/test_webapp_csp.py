"""The web app under its own Content-Security-Policy (Debian chromium): the login page, the
app with its MapLibre map and workers and the password page run without one violation, and
the login page's `next` never leads off this origin (`/\\evil.example` and its siblings).

The other browser tests open their pages with `bypass_csp` (Playwright's string predicates
are eval, which this CSP refuses); this one waits with selectors and so runs under the CSP."""

from __future__ import annotations

import pytest

from backend.auth import accounts
from backend.hub import Hub
from backend.store import open_store
from backend.web import make_app
from tests.authhelp import TEST_PASSWORD
from tests.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

# `next` values that leave the origin in a browser that trusts them (a backslash reads as a
# slash; tabs and newlines are dropped from URLs)
HOSTILE_NEXT = ["/%5Cevil.example", "//evil.example", "/%09/evil.example",
                "https://evil.example/", "javascript:alert(1)"]
STEP_MS = 30_000


async def test_app_runs_under_its_csp_and_next_stays_here(tmp_path):
    from aiohttp import web
    from playwright.async_api import async_playwright

    store = open_store(f"sqlite://{tmp_path / 'fleet.db'}")
    await store.open()
    await accounts.add_user(store, "test-dispatcher", "dispatcher", TEST_PASSWORD,
                            all_vehicles=True)
    runner = web.AppRunner(make_app(Hub(), store, lambda: {}), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    errors: list[str] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1024, "height": 700})
            # Chrome reports every CSP violation as a console error ("Refused to …")
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            for i, nxt in enumerate(HOSTILE_NEXT):
                answer = await page.goto(f"{base}/login?next={nxt}")
                assert "script-src 'self'" in answer.headers["content-security-policy"]
                await page.fill("#username", "test-dispatcher")
                await page.fill("#password", TEST_PASSWORD)
                await page.click("button[type=submit]")
                # the app itself, on this origin: its map and workers loaded under the CSP
                await page.wait_for_selector("body[data-ready='true']", timeout=STEP_MS)
                assert page.url == f"{base}/", (nxt, page.url)
                if i == 0:
                    await page.wait_for_selector("#map canvas", timeout=STEP_MS)
                    await page.goto(f"{base}/password")  # its script asks /api/me
                    await page.wait_for_load_state("networkidle", timeout=STEP_MS)
                await page.context.clear_cookies()
            await browser.close()
    finally:
        await runner.cleanup()
        await store.close()
    # no violation, no error (a 401 from /api/me after the cookies were cleared is none)
    assert not errors, errors
