"""Helpers for the web app's browser tests: Debian's chromium under Playwright (SwiftShader
WebGL), logging in, console errors, screenshots and counting drawn pixels.

Pages that wait with `wait_for_function` need `new_page(bypass_csp=True)`: Playwright evaluates
string predicates with eval, which the backend's Content-Security-Policy refuses.
tests/system/test_webapp_csp.py runs the app under its CSP, waiting with selectors only."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

from .authhelp import TEST_PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# a sandbox-less root container with no GPU and no network (docs/operations.md): WebGL runs on
# SwiftShader, and chromium must not call home
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
READY = "document.body.dataset.ready === 'true'"


def launch(playwright):
    assert Path(CHROMIUM).exists(), "chromium missing: `make test` installs Debian's chromium"
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class ConsoleErrors(list):
    """Every console error and uncaught exception of a page, for `assert not errors`."""

    def __init__(self, page):
        super().__init__()
        self.allowed: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.append(f"uncaught: {exc}"))

    def _console(self, msg) -> None:
        if msg.type == "error" and not any(a in msg.text for a in self.allowed):
            self.append(f"console: {msg.text} @ {msg.location}")


def login(page, base: str, user: str, password: str = TEST_PASSWORD) -> None:
    page.goto(base + "/")
    page.wait_for_url("**/login**", timeout=10000)  # no session: the app sends us to log in
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")
    # a selector, not wait_for_function: the app's CSP (no 'unsafe-eval') refuses Playwright's
    # evaluation of a string predicate
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30000)


def count_pixels(page, selector: str, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    """Pixels of colour `rgb` in a screenshot of `selector` (decoded by the browser itself)."""
    png = base64.b64encode(page.locator(selector).screenshot()).decode()
    return page.evaluate("""async ([png, rgb, tol]) => {
        const img = new Image();
        img.src = 'data:image/png;base64,' + png;
        await img.decode();
        const c = document.createElement('canvas');
        c.width = img.width; c.height = img.height;
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - rgb[0]) <= tol && Math.abs(d[i + 1] - rgb[1]) <= tol
                && Math.abs(d[i + 2] - rgb[2]) <= tol) n++;
        return n; }""", [png, list(rgb), tolerance])


def screenshot(page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot next to the test's output (and in $FLEET_SCREENSHOT_DIR)."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot))
    if os.environ.get("FLEET_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["FLEET_SCREENSHOT_DIR"]) / shot.name)
    return shot
