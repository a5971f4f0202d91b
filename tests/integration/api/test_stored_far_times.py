"""Whatever is already in a store never stops start-up or an API answer (issue 22): a last
position in the year 10000, written straight into SQLite or PostgreSQL as an older gateway
would have stored it, used to make `GET /api/vehicles` fail and the backend exit at start-up."""

from __future__ import annotations

import socket
import sqlite3

import aiohttp
import asyncpg

from backend.config import BackendConfig
from backend.service import Backend
from backend.store import open_store
from backend.store.base import sqlite_path
from tests.authhelp import add_user_token, bearer

YEAR_10000_MS = 253_402_300_800_000 + 3_600_000
RECENT_MS = 1_760_000_000_000


async def store_far_position(db_url: str, vehicle: str) -> None:
    store = open_store(db_url)
    await store.open()
    await store.add_vehicle(vehicle)
    await store.add_vehicle("normal")
    await store.close()
    if db_url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(db_url)) as db:
            db.execute("INSERT INTO last_position (vehicle_id, time_ms, lat, lon, speed_kmh, "
                       "course_deg, epoch, seq) VALUES (?, ?, 52.0, 4.0, 10, 90, 1, 1)",
                       (vehicle, YEAR_10000_MS))
            db.execute("INSERT INTO last_position (vehicle_id, time_ms, lat, lon, speed_kmh, "
                       "course_deg, epoch, seq) VALUES ('normal', ?, 53.0, 5.0, 10, 90, 1, 1)",
                       (RECENT_MS,))
        return
    conn = await asyncpg.connect(db_url)
    try:
        for v, ms in ((vehicle, YEAR_10000_MS), ("normal", RECENT_MS)):
            await conn.execute(
                "INSERT INTO last_position (vehicle_id, time, location, speed_kmh, course_deg, "
                "epoch, seq) VALUES ($1, timestamptz 'epoch' + $2::bigint * interval '1 ms', "
                "ST_SetSRID(ST_MakePoint(4, 52), 4326), 10, 90, 1, 1)", v, ms)
    finally:
        await conn.close()


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_stored_year_10000_position_stops_neither_start_up_nor_the_api(
        store_url, pki, tmp_path):
    await store_far_position(store_url, "far")
    config = BackendConfig(db=store_url, quic_host="127.0.0.1", quic_port=_udp_port(),
                           http_host="127.0.0.1", http_port=0, cert=pki["cert"],
                           key=pki["key"], ticket_file=str(tmp_path / "tickets.sqlite"))
    backend = Backend(config)
    await backend.start()  # seeded the hub from last_position without failing
    try:
        token = await add_user_token(backend.store, "viewer", "viewer")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{backend.http_port}/api/vehicles",
                                headers=bearer(token)) as resp:
                assert resp.status == 200, await resp.text()
                vehicles = {v["id"]: v for v in (await resp.json())["vehicles"]}
        assert vehicles["far"]["position"] is None  # no date can name it: no position
        assert vehicles["normal"]["position"]["time"] == "2025-10-09T08:53:20.000Z"
        # never pinned as the newest position in the hub
        assert "far" not in backend.hub.last and "normal" in backend.hub.last
    finally:
        await backend.stop()


def test_the_time_window_is_configurable_and_checked_at_start():
    import pytest

    default = BackendConfig().time_window()
    assert (default.min_ms, default.max_ahead_ms) == (946_684_800_000, 86_400_000)
    narrow = BackendConfig(reading_min_time="2020-06-01T12:00:00+02:00",
                           reading_max_ahead_s=600).time_window()
    assert (narrow.min_ms, narrow.max_ahead_ms) == (1_591_005_600_000, 600_000)
    for bad in (dict(reading_min_time="last tuesday"), dict(reading_max_ahead_s=0)):
        with pytest.raises(ValueError):
            BackendConfig(**bad)
