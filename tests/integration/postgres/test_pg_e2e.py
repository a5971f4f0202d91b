"""The whole path on the production store: pty GPS → agent → QUIC → gateway → PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import psycopg
import pytest

from backend.store import open_store
from tests.conftest import wait_for

pytestmark = pytest.mark.postgres


def pg_rows(url: str, vehicle: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT seq, (extract(epoch FROM time) * 1000)::bigint, ST_Y(location),"
            " ST_X(location), speed_kmh FROM vehicle_telemetry"
            " WHERE vehicle_id = %s AND kind = 'pos' ORDER BY seq", (vehicle,)).fetchall()


def test_agent_to_postgres_through_the_gateway(procs, pg_url):
    async def provision() -> str:
        store = open_store(pg_url)
        await store.open()
        try:
            return await store.add_vehicle("truck-p")
        finally:
            await store.close()

    procs.tokens["truck-p"] = asyncio.run(provision())
    token = procs.api_token("viewer", db=pg_url)
    procs.backend("--db", pg_url)  # the later --db wins over the fixture's SQLite default
    procs.gps_sim("truck-p", rate=10, count=40)
    agent = procs.agent("truck-p")
    wait_for(lambda: len(pg_rows(pg_url, "truck-p")) == 40, 40, "40 rows in PostgreSQL")
    rows, sent = pg_rows(pg_url, "truck-p"), procs.sent("truck-p")
    assert [r[0] for r in rows] == list(range(1, 41))
    by_time = {s["ts_ms"]: s for s in sent}
    for seq, time_ms, lat, lon, speed in rows:
        s = by_time[time_ms]
        assert (lat, lon) == pytest.approx((s["lat"], s["lon"]), abs=1e-9), seq
        assert speed == pytest.approx(s["speed_kmh"], abs=1e-6)
    req = urllib.request.Request(f"http://127.0.0.1:{procs.http_port}/api/vehicles",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        [vehicle] = json.load(r)["vehicles"]
    position = vehicle["position"]
    assert (position["lon"], position["lat"]) == pytest.approx((sent[-1]["lon"], sent[-1]["lat"]))
    assert agent.stop() == 0
