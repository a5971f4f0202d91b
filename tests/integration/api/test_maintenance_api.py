"""Forecasts through the REST API on SQLite and PostgreSQL, from drives of hil/drives.py
written through the store: the battery decaying by a known slope is forecast, the steady
ones are not, the hot-running vehicle is named against its peers; JSON and CSV."""

from __future__ import annotations

import pytest

from backend.api.common import MAINTENANCE
from backend.maintenance.config import parse_maintenance
from backend.maintenance.monitor import MaintenanceMonitor
from backend.store.base import StoredReading
from geostream.clock import wall_ms
from hil.drives import SIGNALS, DriveBuilder, calm_trip
from tests.integration.api.apphelp import Api

DAY = 86_400_000
CFG = parse_maintenance({
    "recent_hours": 48, "baseline_days": 1,
    "trend": [{"signal": SIGNALS["battery"], "threshold": 12.0, "label": "resting battery "
               "voltage", "unit": "V", "rest_signal": SIGNALS["rpm"], "days": 30}],
    "health": [{"signal": SIGNALS["coolant"], "min_samples": 20, "bands": [
        {"signal": SIGNALS["speed"], "width": 20}, {"signal": SIGNALS["ambient"],
                                                    "width": 10}]}]})


def stored(vehicle: str, b: DriveBuilder) -> list[StoredReading]:
    """A drive as the gateway would have stored it."""
    out = [StoredReading(vehicle, 1, i, p["time_ms"], "pos", lat=p["lat"], lon=p["lon"],
                         speed_kmh=p["speed_kmh"], course_deg=p["course_deg"], fix=3,
                         received_ms=p["time_ms"]) for i, p in enumerate(b.drive.positions)]
    out += [StoredReading(vehicle, 1, 10_000_000 + i, t, "can", data=sig, received_ms=t)
            for i, (t, sig) in enumerate(b.drive.signals)]
    return out


def _fortnight(start: int, slope: float, seed: int, coolant: float = 0.0) -> DriveBuilder:
    b = DriveBuilder(start, seed=seed, battery_rest_v=12.6)
    b.battery_slope_v_per_day, b.coolant_offset = slope, coolant
    for d in range(10):
        b.park((start + d * DAY + 7 * 3_600_000 - b.t_ms) // 1000, every_s=1800)
        calm_trip(b, minutes=8)
        b.park((start + (d + 1) * DAY - b.t_ms) // 1000, every_s=1800)
    return b


def _mount(app, store) -> None:
    app[MAINTENANCE] = MaintenanceMonitor(store, CFG)


async def test_forecasts_name_the_decaying_battery_and_the_hot_engine(store_url):
    async with Api(store_url, mount=_mount) as api:
        now = wall_ms()
        start = (now - 10 * DAY) // DAY * DAY
        for i, v in enumerate(["truck-1", "truck-2", "truck-3", "truck-4"]):
            await api.store.add_vehicle(v)
            b = _fortnight(start, -0.03 if v == "truck-1" else 0.0, seed=i,
                           coolant=8.0 if v == "truck-3" else 0.0)
            await api.store.write(stored(v, b), [])
        _, got = await api.call("GET", "/api/maintenance/forecasts", expect=200)
        trends = [f for f in got["forecasts"] if f["kind"] == "trend"]
        assert [f["vehicle"] for f in trends] == ["truck-1"]
        [f] = trends
        assert "Theil–Sen" in f["method"] and f["text"].startswith(
            "resting battery voltage reaches 12.0 V in about")
        assert f["slope_per_day"] == pytest.approx(-0.03, abs=0.005)
        peers = [f for f in got["forecasts"] if f["kind"] == "peer"]
        assert peers and {f["vehicle"] for f in peers} == {"truck-3"}
        assert "peers" in peers[0]["method"] and "AmbientAirTemp" in peers[0]["band"]
        _, text = await api.call("GET", "/api/maintenance/forecasts?format=csv", expect=200)
        lines = text.strip().split("\r\n")
        assert lines[0].startswith("vehicle,kind,signal,text,method")
        assert lines[1].startswith("truck-1,trend,") and len(lines) == 1 + len(got["forecasts"])
        # a viewer of truck-1 only: no peers to compare with, its own forecast still
        _, mine = await api.call("GET", "/api/maintenance/forecasts", vehicles=["truck-1"],
                                 expect=200)
        assert [(f["vehicle"], f["kind"]) for f in mine["forecasts"]] == [("truck-1", "trend")]
