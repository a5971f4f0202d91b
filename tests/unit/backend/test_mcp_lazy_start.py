"""backend/mcp/http.py `LazyAsgi`, which builds and starts the MCP SDK's app on the first
/mcp request: a start that fails, or whose request is cancelled, leaves nothing behind, and
the next request starts afresh. The SDK cannot be made to fail its startup, so a stand-in app
does (the ASGI lifespan protocol is all `LazyAsgi` sees of it)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from backend.mcp.http import LazyAsgi


class StandIn:
    """An ASGI app whose lifespan answers each `lifespan.startup` (failing it when `fail`, after
    `gate` when set) and waits for the next message, as the protocol allows; it refuses HTTP
    until its startup completed, as the SDK's session manager does (no task group yet)."""

    def __init__(self, fail: bool = False, gate: asyncio.Event | None = None):
        self.fail, self.gate = fail, gate
        self.startups = 0
        self.started = False
        self.running = False  # its lifespan runs
        self.shut_down = False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            if not self.started:
                raise RuntimeError("not started")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        self.running = True
        try:
            for _ in range(10):  # bounded: a test sends a few lifespan messages at most
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    self.shut_down = True
                    await send({"type": "lifespan.shutdown.complete"})
                    return
                self.startups += 1
                if self.gate is not None:
                    await self.gate.wait()
                if self.fail:
                    await send({"type": "lifespan.startup.failed", "message": "boom"})
                else:
                    self.started = True
                    await send({"type": "lifespan.startup.complete"})
        finally:
            self.running = False


async def request(app) -> tuple[int, bytes]:
    """One HTTP request through `app`: (status, body)."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": "/mcp", "headers": []}, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def test_a_failed_start_is_loud_and_the_next_request_starts_afresh(caplog):
    apps = iter([StandIn(fail=True), StandIn()])
    built: list[StandIn] = []
    lazy = LazyAsgi(lambda: built.append(next(apps)) or built[-1])
    with caplog.at_level(logging.ERROR, logger="backend.mcp"):
        with pytest.raises(RuntimeError, match="startup failed: boom"):  # aiohttp: a 500
            await request(lazy)
    assert not lazy.started and not built[0].running  # its lifespan did not stay behind
    assert await asyncio.wait_for(request(lazy), 10) == (200, b"ok")
    assert [app.startups for app in built] == [1, 1]
    await asyncio.wait_for(lazy.close(), 10)  # the backend stops: the started app shuts down
    assert [(app.running, app.shut_down) for app in built] == [(False, False), (False, True)]
    assert "the MCP app failed to start" in caplog.text


async def test_a_start_whose_request_was_cancelled_leaves_nothing_behind():
    gate = asyncio.Event()
    first_app, second_app = StandIn(gate=gate), StandIn()
    apps = iter([first_app, second_app])
    lazy = LazyAsgi(lambda: next(apps))
    first = asyncio.create_task(request(lazy))
    for _ in range(100):  # bounded: its lifespan takes the startup within a few loop turns
        if first_app.startups:
            break
        await asyncio.sleep(0)
    first.cancel()  # the client went away while the app was starting
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()  # the first app would now finish its startup, for nobody
    for _ in range(10):  # a few loop turns for it to do so, were it still running
        await asyncio.sleep(0)
    assert (first_app.running, first_app.started) == (False, False)
    assert await asyncio.wait_for(request(lazy), 10) == (200, b"ok")
    assert second_app.startups == 1
    await asyncio.wait_for(lazy.close(), 10)
    assert (second_app.running, second_app.shut_down) == (False, True)
