"""The driver's own messages on the in-cab tablet (agent/cab/, docs/protocol.md §11): what the
driver sent is listed back with dispatch's messages, in the order the vehicle took them, once
each, through the cab's real HTTPS API and its live socket; a vehicle from before keeps
showing the mailbox's messages."""

from __future__ import annotations

import asyncio
import sqlite3
import ssl
from types import SimpleNamespace

import aiohttp

from agent.cab import records
from agent.cab.server import CabServer
from agent.command_runner import CommandRunner
from agent.config import CabConfig
from agent.daemon import Agent
from agent.journal_worker import JournalWorker
from agent.mailbox import Mailbox
from agent.vehicle_db import open_vehicle_db
from geostream.clock import wall_ms


def message(n: int, text: str) -> dict:
    return {"key": f"tablet-0001:{n:04d}", "device_id": "tablet-0001", "device_seq": n,
            "kind": "message", "text": text}


async def test_the_drivers_own_messages_are_listed_back_once_in_order(tmp_path):
    path = str(tmp_path / "j.sqlite")
    journal = JournalWorker(path)
    agent = SimpleNamespace(config=SimpleNamespace(vehicle_id="v1",
                                                   journal=SimpleNamespace(path=path)),
                            journal=journal, runner=CommandRunner(path),
                            uplink=SimpleNamespace(notify=lambda: None))
    agent.take_action = lambda action: Agent.take_action(agent, action)  # the daemon's own
    server = CabServer(CabConfig(enabled=True, listen="127.0.0.1", port=0), agent)
    assert await server.start()
    ctx = ssl.create_default_context(cafile=str(server.files.ca_cert))
    jar = aiohttp.CookieJar(unsafe=True)  # the cab's address is an IP
    try:
        async with aiohttp.ClientSession(server.origin, cookie_jar=jar,
                                         connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            code = (await server.control({"op": "pair"}))["code"]
            async with http.post("/api/cab/pair", json={"code": code}) as r:
                assert r.status == 200
            async with http.get("/api/me") as r:
                csrf = (await r.json())["csrf_token"]

            async def send(action: dict) -> dict:
                async with http.post("/api/driver/actions", json=action,
                                     headers={"X-CSRF-Token": csrf}) as r:
                    assert r.status == 200, await r.text()
                    return await r.json()

            async def listed(after: int = 0) -> list[dict]:
                async with http.get(f"/api/driver/messages?after={after}") as r:
                    assert r.status == 200
                    return (await r.json())["messages"]

            await agent.runner.db(lambda c: Mailbox(c).add_message(
                41, "Gate code 1234", "dispatcher:ann", wall_ms()))
            await send(message(1, "At the gate, it is locked"))
            assert (await send(message(1, "At the gate, it is locked")))["replay"] is True
            shown = await listed()
            assert [(m["direction"], m["author"], m["text"]) for m in shown] == [
                ("to_driver", "dispatcher:ann", "Gate code 1234"),
                ("from_driver", "tablet-0001", "At the gate, it is locked")]
            assert shown[0]["seq"] < shown[1]["seq"]
            assert await listed(shown[0]["seq"]) == [shown[1]]
            assert (await journal.stats()).pending == 1, "journaled once"
            # the live socket brings the next one as it is taken
            async with http.ws_connect("/api/driver/live") as ws:
                await send(message(2, "Inside now"))
                pushed = await asyncio.wait_for(ws.receive_json(), 15)
            assert pushed["message"]["text"] == "Inside now"
            assert pushed["message"]["seq"] > shown[1]["seq"]
            assert [m["text"] for m in await listed(shown[1]["seq"])] == ["Inside now"]
    finally:
        await server.close()
        agent.runner.close()
        journal.close()


def test_a_vehicle_from_before_shows_its_mailbox_messages(tmp_path):
    path = str(tmp_path / "old.sqlite")
    with sqlite3.connect(path) as old:  # the mailbox of an agent without cab_messages
        old.execute("CREATE TABLE mailbox_messages (message_id INTEGER PRIMARY KEY, text TEXT "
                    "NOT NULL, sender TEXT NOT NULL, received_ms INTEGER NOT NULL, "
                    "read_ms INTEGER)")
        old.executemany("INSERT INTO mailbox_messages VALUES (?, ?, ?, ?, NULL)",
                        [(7, "first", "ann", 1000), (9, "second", "bob", 2000)])
    old.close()
    for _ in range(2):  # opened again: nothing added twice
        db = open_vehicle_db(path)
        try:
            shown = records.shown_messages(db, 0)
        finally:
            db.close()
        assert [(m["text"], m["author"], m["direction"]) for m in shown] == [
            ("first", "ann", "to_driver"), ("second", "bob", "to_driver")]
