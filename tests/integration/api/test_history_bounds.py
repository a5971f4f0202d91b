"""History questions are bounded (a window of at most 31 days, at most MAX_HISTORY_ROWS
positions read, LIMIT in SQL, a clear 400 beyond) and read off the writer's connection."""

from __future__ import annotations

import asyncio
import threading

import pytest

from backend import queries
from backend.store import open_store
from backend.store.base import StoredReading
from tests.integration.api.apphelp import Api

T0 = 1_763_856_000_000
DAY = 86_400_000


def _points(n: int) -> list[StoredReading]:
    return [StoredReading(vehicle_id="v1", epoch=1, seq=i, time_ms=T0 + i * 1000, kind="pos",
                          lat=50.0, lon=8.0 + i * 1e-4, speed_kmh=30.0, received_ms=T0)
            for i in range(n)]


async def test_windows_and_rows_are_bounded(store_url, monkeypatch):
    async with Api(store_url) as api:
        await api.store.write(_points(10), [])
        for path in ("route", "trips", "geofence-entries"):
            window = f"from_ms={T0}&to_ms={T0 + 32 * DAY}"  # a day more than allowed
            _, body = await api.call("GET", f"/api/vehicles/v1/{path}?{window}", expect=400)
            assert "31 days" in body["error"], path
        # the store reads at most what it is asked for, in SQL
        assert len(await api.store.route("v1", T0, T0 + DAY, limit=3)) == 3
        assert len(await api.store.route("v1", T0, T0 + DAY, 2000, limit=2)) == 2
        monkeypatch.setattr(queries, "MAX_HISTORY_ROWS", 5)
        window = f"from_ms={T0}&to_ms={T0 + DAY}"
        for path in ("route", "trips"):
            _, body = await api.call("GET", f"/api/vehicles/v1/{path}?{window}", expect=400)
            assert "more than 5 positions" in body["error"]
        _, thin = await api.call("GET", f"/api/vehicles/v1/route?{window}&step_s=3", expect=200)
        assert thin["properties"]["points"] == 4  # one per 3 s bucket: 0, 3, 6, 9


async def test_an_iso_time_beside_its_ms_twin_is_checked_too(store_url):
    """`from_ms` wins over `from`, but a malformed `from` is still refused (not ignored)."""
    async with Api(store_url) as api:
        await api.store.write(_points(3), [])
        for path in ("route", "trips"):
            _, body = await api.call(
                "GET", f"/api/vehicles/v1/{path}?from_ms={T0}&to_ms={T0 + DAY}&from=%C2%AFp",
                expect=400)
            assert "from must be an ISO 8601" in body["error"], path
            await api.call("GET", f"/api/vehicles/v1/{path}?from_ms={T0}&to_ms={T0 + DAY}"
                           "&from=2025-11-23T00:00:00Z", expect=200)


async def test_sqlite_history_reads_beside_a_busy_writer(tmp_path):
    store = open_store(f"sqlite://{tmp_path / 'fleet.db'}")
    await store.open()
    try:
        await store.write(_points(10), [])
        busy, release = threading.Event(), threading.Event()

        def hold_the_writer() -> None:  # a long write transaction on the writer's thread
            busy.set()
            release.wait(60)

        writer = asyncio.get_running_loop().run_in_executor(store._executor, hold_the_writer)
        await asyncio.get_running_loop().run_in_executor(None, busy.wait, 60)
        try:
            # answered while the writer's thread is taken (a bound, not a timing)
            points = await asyncio.wait_for(store.route("v1", T0, T0 + DAY), 30)
            assert len(points) == 10
        finally:
            release.set()
            await writer
    finally:
        await store.close()


@pytest.mark.parametrize("window_days", [1, 31])
def test_check_window(window_days):
    queries.check_window(T0, T0 + window_days * DAY)
    with pytest.raises(ValueError):
        queries.check_window(T0, T0)
