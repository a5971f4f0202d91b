"""A dispatcher subscribes in the web app's Notifications tab (Debian chromium under the app's
Content-Security-Policy) against a real backend: a destination the egress rule refuses shows
the server's reason, a loopback webhook (allowed by the test's configuration) is kept, its
secret shown once; a job put on a route reaches the receiver, signed, and the delivery log in
the tab shows it sent."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.store import open_store
from geostream.clock import wall_ms
from tests.browser import ConsoleErrors, launch, login, screenshot
from tests.conftest import wait_for
from tests.integration.notify.helpers import HookReceiver, dispatch_jobs

pytestmark = pytest.mark.browser


def test_subscribe_and_read_the_delivery_log(procs, tmp_path):
    from playwright.sync_api import sync_playwright

    procs.api_token("dispatcher")  # the user test-dispatcher (every vehicle)
    config = tmp_path / "backend.toml"
    config.write_text('[notify]\nallow_networks = ["127.0.0.0/8"]\npoll_s = 0.2\n')
    procs.backend("--config", str(config))
    base = f"http://127.0.0.1:{procs.http_port}"
    receiver = HookReceiver("unknown yet")
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            errors = ConsoleErrors(page)
            login(page, base, "test-dispatcher")
            page.click("button[data-tab=notifications]")
            page.check("#subscribe-form input[value='job.dispatched']")
            page.select_option("#subscribe-channel", "webhook")
            errors.allowed.append("status of 400")  # the browser logs the refused POST
            page.fill("#subscribe-target", "http://10.0.0.1/hook")
            page.click("#subscribe")
            page.wait_for_selector("#subscribe-answer:text('refused: target: 10.0.0.1 is a "
                                   "private address')")
            page.fill("#subscribe-target", f"http://127.0.0.1:{receiver.port}/hook")
            page.click("#subscribe")
            page.wait_for_selector("#subscribe-answer:text('signing secret')")
            answer = page.inner_text("#subscribe-answer")
            receiver.secret = re.search(r"(whsec_\S+)", answer)[1]
            page.wait_for_selector("#subscriptions li[data-subscription]")

            async def dispatch():
                store = open_store(f"sqlite://{procs.db_path}")
                await store.open()
                try:
                    await dispatch_jobs(store, ["J-1"], "R-1", "van-1", wall_ms())
                finally:
                    await store.close()

            # Playwright's sync API runs a loop on this thread: the store's on another
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, dispatch()).result(30)
            wait_for(lambda: receiver.seen, 20, "the webhook at the receiver")
            page.click("#subscriptions li[data-subscription] button.show-log")
            page.wait_for_selector("#delivery-log tr.ok:has-text('job.as-R-1-J-1')")
            screenshot(page, tmp_path, "notifications")
            browser.close()
        assert not errors, errors
        assert receiver.seen == [("job.as-R-1-J-1", True)]  # its signature verified
    finally:
        receiver.stop()
