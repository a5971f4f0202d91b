"""The backend keeps each vehicle's latest agent status (protocol.md §3 status), its command list
and what is pending for it, on both stores."""

from __future__ import annotations

import asyncio
import json


async def _rows(store) -> list[tuple]:
    """(vehicle, time_ms, status) read with each database's own SQL, not through the store."""
    if hasattr(store, "_pool"):
        rows = await store._pool.fetch(
            "SELECT vehicle_id, (extract(epoch FROM time) * 1000)::bigint, status::text "
            "FROM vehicle_status ORDER BY vehicle_id")
        return [(r[0], r[1], json.loads(r[2])) for r in rows]
    return [(v, t, json.loads(s)) for v, t, s in store._db.execute(
        "SELECT vehicle_id, time_ms, status FROM vehicle_status ORDER BY vehicle_id")]


async def test_the_latest_status_replaces_the_last(any_store):
    store = any_store
    first = {"time": 1, "backlog": 500, "journal_bytes": 4096, "dropped": 0,
             "sources": {"gps": "no fix"}}
    latest = {**first, "time": 2, "backlog": 0, "sources": {"gps": "fix"}}
    await store.save_vehicle_status("truck-1", first, 1_700_000_000_000)
    await store.save_vehicle_status("truck-2", first, 1_700_000_000_500)
    await store.save_vehicle_status("truck-1", latest, 1_700_000_030_000)
    assert await _rows(store) == [("truck-1", 1_700_000_030_000, latest),
                                  ("truck-2", 1_700_000_000_500, first)]


async def test_reports_of_many_vehicles_at_once_keep_each_ones_newest(any_store):
    """A fleet reporting at once (a storm's hellos): every vehicle's newest report is kept;
    on PostgreSQL they share statements (a statement per report took a pool connection, a
    commit and ~140 µs of the gateway loop's CPU each)."""
    store = any_store
    t0 = 1_700_000_000_000
    await asyncio.gather(*(store.save_vehicle_status(f"v{i % 300:03d}", {"n": i}, t0 + i)
                           for i in range(600)))
    await asyncio.gather(*(store.save_vehicle_commands(f"v{i:03d}", ["ping", f"c{i}"], t0)
                           for i in range(300)))
    assert await _rows(store) == [(f"v{i:03d}", t0 + 300 + i, {"n": 300 + i})
                                  for i in range(300)]
    assert [await store.vehicle_commands(f"v{i:03d}") for i in (0, 299)] == [
        ["ping", "c0"], ["ping", "c299"]]
    if hasattr(store, "_pool"):  # PostgreSQL
        assert store._statuses.rounds < 10 and store._command_lists.rounds < 10


async def test_pending_commands_asked_at_once_are_each_vehicles_own(any_store):
    """A fleet's hellos ask what is pending at once: each vehicle gets its own unanswered
    commands, oldest first; on PostgreSQL the questions share queries."""
    store = any_store
    ids = {}
    for i in range(40):
        ids[i] = await store.add_command(f"v{i % 4}", "ping", {"n": i})
    for i in (5, 6):  # answered: no longer pending
        await store.answer_command(f"v{i % 4}", ids[i], True, "ok", 1_700_000_000_000)
    asked = [f"v{i % 5}" for i in range(50)]  # v4 has none
    got = await asyncio.gather(*(store.pending_commands(v) for v in asked))
    for v, commands in zip(asked, got, strict=True):
        want = [ids[i] for i in range(40) if f"v{i % 4}" == v and i not in (5, 6)]
        assert [c.id for c in commands] == want and all(c.vehicle_id == v for c in commands)
    if hasattr(store, "_pool"):  # PostgreSQL
        assert store._pending.rounds < 5
