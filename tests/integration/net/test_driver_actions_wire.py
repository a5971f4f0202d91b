"""Driver actions through the vehicle's journal (docs/protocol.md §4 "act"), on the wire: the
real agent uplink and journal, the real gateway. Each action reaches the gateway's applier
hook before its batch is acknowledged, is stored once, and an applier that fails leaves the
batch unacknowledged so the agent sends it again; the journal's limits never drop actions."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from agent.journal import Journal
from agent.readings import Action, Position
from geostream import image_parts as ip
from tests.integration.net.rig import AgentRig, until


def action(n: int) -> dict:
    return {"key": f"tablet-1:{n:04d}", "device_id": "tablet-1", "device_seq": n,
            "kind": "arrive", "job_id": "j1", "route_id": "r1", "done_ms": 1_700_000_000_000}


async def test_actions_are_applied_before_the_ack_and_stored_once(gw, tmp_path, pki):
    token = await gw.provision("act-1")
    seen: list[tuple[str, str]] = []
    failures = [1]  # the applier's store is away once

    async def applier(vehicle, readings, now_ms):  # the hook the driver applier fills
        if failures:
            failures.pop()
            raise ConnectionError("store away")
        seen.extend((vehicle, r.data["key"]) for r in readings)

    gw.gateway.driver_actions = applier
    agent = AgentRig(tmp_path / "a", "act-1", token, gw.host, gw.port, pki["ca"]).start()
    try:
        await agent.journal.append([Action(1_700_000_000_000 + i, action(i)) for i in (1, 2)])
        agent.uplink.notify()
        await until(lambda: len(seen) >= 2, 30, "the actions applied")
        await until_pending_zero(agent)
        assert seen == [("act-1", "tablet-1:0001"), ("act-1", "tablet-1:0002")]
        assert agent.uplink.stats.connects >= 2, "refused once: the agent came back and re-sent"
        rows = await gw.seqs("act-1")
        assert rows == sorted(set(rows)) and len(rows) == 2
    finally:
        await agent.stop()


async def test_image_parts_refused_at_the_edge_or_by_the_applier_are_dead_letters(
        gw, tmp_path, pki):
    """docs/protocol.md §4 "Images": a malformed part is dead-lettered at the gateway's edge
    (the applier never sees it), one the assembly refuses is dead-lettered after it; the
    batch is acknowledged either way and the rest of it stored."""
    token = await gw.provision("img-1")
    seen: list[str] = []

    async def applier(vehicle, readings, now_ms):
        seen.extend(r.data["key"] for r in readings)
        return [(r.seq, "forged: other bytes") for r in readings
                if r.data["key"] == ip.part_key("f" + "1" * 40, 0)]

    gw.gateway.driver_actions = applier
    forged = ip.split("f" + "1" * 40, "photo", "j1", b"\xff\xd8\xff" + bytes(100), "tablet-1")
    broken = ip.split("f" + "2" * 40, "photo", "j1", b"\xff\xd8\xff" + bytes(100), "tablet-1")
    broken[0]["image"]["count"] = ip.MAX_PARTS + 1
    agent = AgentRig(tmp_path / "a", "img-1", token, gw.host, gw.port, pki["ca"]).start()
    try:
        await agent.journal.append([Action(1_700_000_000_000, a)
                                    for a in (forged[0], broken[0], action(1))])
        agent.uplink.notify()
        await until(lambda: len(seen) >= 2, 30, "the batch through the applier")
        await until_pending_zero(agent)
        assert seen == [forged[0]["key"], "tablet-1:0001"], "the malformed part never got there"
        with sqlite3.connect(gw.db_path, timeout=10) as db:
            dead = {json.loads(r)["action"]["key"]: e for r, e in db.execute(
                "SELECT reading, error FROM dead_letter")}
        assert set(dead) == {forged[0]["key"], broken[0]["key"]}
        assert "forged" in dead[forged[0]["key"]] and "image.count" in dead[broken[0]["key"]]
        assert len(await gw.seqs("img-1")) == 1, "the action stored, the parts not"
    finally:
        await agent.stop()


async def until_pending_zero(agent: AgentRig) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await agent.pending():
        assert loop.time() < deadline, "the actions were never acknowledged"
        await asyncio.sleep(0.05)


def test_the_journal_limits_never_drop_actions(tmp_path):
    j = Journal(str(tmp_path / "j.sqlite"), max_mb=0.05, max_age_h=1 / 3600)
    try:
        j.append([Action(1_000, action(1))])
        for i in range(40):  # far beyond the size and age limits
            j.append([Position(2_000_000 + i * 1000 + k, 52.0, 4.0) for k in range(100)])
        kinds = [r[0] for r in j._db.execute("SELECT kind FROM readings ORDER BY seq LIMIT 3")]
        assert kinds[0] == "act"
        dropped = j.stats().dropped
        assert dropped.get("pos", 0) > 0 and "act" not in dropped
    finally:
        j.close()
