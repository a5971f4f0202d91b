"""`python -m backend service record|history` on SQLite: recording closes the open service
alert and restarts the interval; bad input exits 2 and stores nothing."""

from __future__ import annotations

import asyncio
import json

from backend.cli import main
from backend.maintenance.config import parse_maintenance
from backend.maintenance.monitor import MaintenanceMonitor
from backend.store import open_store
from backend.store.base import AlertQuery
from geostream.clock import wall_ms
from tests.mcptools.fleetdata import load

CONFIG = """
[[maintenance.interval]]
name = "oil"
by = "km"
every = 100
due_within = 10
"""


async def _with(url, action):
    store = open_store(url)
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


async def _seed(store):
    now = wall_ms()
    await load(store, now)  # truck-1: 95 km on the CAN odometer, "oil" due
    await MaintenanceMonitor(store, parse_maintenance(
        {"interval": [{"name": "oil", "by": "km", "every": 100, "due_within": 10}]})).check(now)


async def _service_alerts(store):
    return [(a.subject, a.state) for a in await store.list_alerts(
        AlertQuery(rule="service", vehicle="truck-1", limit=10))]


def run(capsys, url, config, *args) -> tuple[int, str, str]:
    code = main(["--db", url, "--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_record_closes_the_alert_and_history_lists_it(tmp_path, capsys):
    url = f"sqlite://{tmp_path / 'f.db'}"
    config = tmp_path / "backend.toml"
    config.write_text(CONFIG)
    asyncio.run(_with(url, _seed))
    assert asyncio.run(_with(url, _service_alerts)) == [("oil", "open")]

    for bad in (["--interval", "brakes"], ["--interval", "oil", "--odometer", "-1"],
                ["--interval", "oil", "--time", "2999-01-01"]):
        code, out, err = run(capsys, url, config, "service", "record", "truck-1", *bad)
        assert (code, out) == (2, "") and err.startswith("backend service: ")
    assert run(capsys, url, config, "service", "record", "nobody", "--interval", "oil")[0] == 1

    code, out, _ = run(capsys, url, config, "service", "record", "truck-1", "--interval", "oil",
                       "--odometer", "1095", "--work", "oil and filter", "--cost", "80")
    got = json.loads(out)
    assert code == 0 and got["closed_alerts"] == 1
    assert (got["service"]["who"], got["service"]["cost"]) == ("cli", 80.0)
    assert asyncio.run(_with(url, _service_alerts)) == [("oil", "closed")]

    code, out, _ = run(capsys, url, config, "service", "history", "truck-1")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["interval"], r["odometer_km"], r["work"]) for r in rows] == [
        ("oil", 1095.0, "oil and filter")]
