"""Issue 18's "done when", exactly: an MCP client connected to a backend set up as the demo
sets it up (hil/demo.py: its vehicles, Depot geofence, [maintenance] table and service
history) answers "which trucks were in geofence Depot yesterday" and "which vehicles are due
for service" from readings stored with yesterday's timestamps."""

from __future__ import annotations

import tomllib

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from backend.config import BackendConfig
from backend.queries import yesterday_bounds
from backend.service import Backend
from backend.store.base import StoredReading
from geostream.clock import wall_ms
from hil import demo
from tests.authhelp import add_user_token, bearer


def _yesterday(now: int) -> list[StoredReading]:
    """truck-2 parks in the Depot for 20 minutes yesterday at noon; truck-1 and truck-3 drive
    past 3 km north; every truck's CAN odometer reads 123 460 km."""
    start, _ = yesterday_bounds(now)
    noon = start + 12 * 3_600_000
    lat, lon = demo.DEPOT_CENTER
    out = []
    for n, v in enumerate(("truck-1", "truck-2", "truck-3")):
        for i in range(20):
            t = noon + i * 60_000
            at = (lat, lon) if v == "truck-2" else (lat + 0.03, lon + 0.001 * i)
            out.append(StoredReading(v, 1, i, t, "pos", lat=at[0], lon=at[1], speed_kmh=0.0,
                                     fix=3, received_ms=t))
            out.append(StoredReading(v, 1, 100 + i, t, "can", received_ms=t, data={
                "HighResTotalVehicleDistance": demo.CAN_GEN_ODOMETER_KM + 4 + n * 0.1}))
    return out


async def test_demo_questions_over_mcp(tmp_path, pki):
    db = f"sqlite://{tmp_path / 'fleet.db'}"
    await demo._provision(db, ["truck-1", "truck-2", "truck-3"], tmp_path / "admin-password")
    config = BackendConfig(db=db, quic_host="127.0.0.1", quic_port=0,
                           http_host="127.0.0.1", http_port=0, cert=pki["cert"], key=pki["key"],
                           ticket_file=str(tmp_path / "t.sqlite"),
                           **tomllib.loads(demo.MAINTENANCE_TOML))
    backend = Backend(config)
    await backend.start()
    try:
        await backend.store.write(_yesterday(wall_ms()), [])
        token = await add_user_token(backend.store, "assistant", "viewer")
        url = f"http://127.0.0.1:{backend.http_port}/mcp"
        async with Client(streamable_http_client(url, http_client=httpx2.AsyncClient(
                headers=bearer(token), timeout=30))) as client:
            depot = await client.call_tool("who_was_in_geofence",
                                           {"geofence": "Depot", "day": "yesterday"})
            due = await client.call_tool("maintenance_status", {"only_due": True})
    finally:
        await backend.stop()
    assert depot.structured_content["vehicles"] == ["truck-2"]
    assert depot.structured_content["presence"][0]["positions_inside"] == 20
    assert due.structured_content["due_for_service"] == ["truck-1", "truck-3"]
    states = {(v["vehicle"], s["interval"]): (s["state"], s["used"])
              for v in due.structured_content["vehicles"] for s in v["services"]}
    assert states[("truck-1", "oil")] == ("due", 14_504.0)  # 123 460 − (123 456 − 14 500)
    assert states[("truck-3", "inspection")][0] == "due"
