"""Export of what was done (GET /api/export/jobs) through the real app and store (SQLite and
PostgreSQL): finished jobs with outcome, times and positions as CSV and GeoJSON, bounded,
scoped to the caller's vehicles."""

from __future__ import annotations

import csv
import io
import time

import pytest

from backend.integrations import export
from tests.integration.api.apphelp import Api

D = "dispatcher"
H = 3_600_000


@pytest.fixture
async def api(store_url):
    async with Api(store_url) as api:
        yield api


async def _day(api: Api) -> int:
    c, now = api.call, int(time.time() * 1000)
    for jid, lat in (("a", 60.10), ("b", 60.20), ("c", 60.30), ("d", 60.40)):
        await c("POST", "/api/jobs", role=D, expect=201, body={
            "id": jid, "name": f"Order {jid}", "place": {"lat": lat, "lon": 24.9},
            "windows": [{"start_ms": now - 2 * H, "end_ms": now - H}]})
    await c("PUT", "/api/routes/r1", role=D, expect=201, body={
        "vehicle_id": "v1", "shift": {"start_ms": now - 3 * H, "end_ms": now + 3 * H},
        "start_depot": "dep", "end_depot": "dep", "driver_id": "d1", "status": "active",
        "stops": [{"job_id": "a"}, {"job_id": "b"}, {"job_id": "c"}]})
    await c("POST", "/api/jobs/a/transitions", role=D, expect=200,
            body={"to": "arrived", "at_ms": now - 30 * 60_000})
    await c("POST", "/api/jobs/a/transitions", role=D, expect=200,
            body={"to": "completed", "lat": 60.1001, "lon": 24.9001})
    await c("POST", "/api/jobs/b/transitions", role=D, expect=200,
            body={"to": "failed", "reason": "nobody home"})
    await c("POST", "/api/jobs/d/cancel", role=D, expect=200,
            body={"reason": "=HYPERLINK(\"http://x.example\")"})
    return now


async def test_csv_and_geojson_of_what_was_done(api):
    now = await _day(api)
    window = f"from_ms={now - H}&to_ms={now + H}"
    _, text = await api.call("GET", f"/api/export/jobs?{window}", expect=200)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == export.COLUMNS
    by = {r["job_id"]: r for r in rows}
    assert sorted(by) == ["a", "b", "d"]  # c is not done
    a = by["a"]
    assert (a["outcome"], a["vehicle_id"], a["driver_id"]) == ("completed", "v1", "d1")
    assert (float(a["done_lat"]), float(a["done_lon"])) == (60.1001, 24.9001)
    assert a["arrived_at"] and a["done_at"] and a["done_by"].startswith("person:")
    assert int(a["late_s"]) == 30 * 60  # arrived half an hour after its window closed
    assert (by["b"]["outcome"], by["b"]["reason"]) == ("failed", "nobody home")
    assert (by["d"]["outcome"], by["d"]["route_id"]) == ("cancelled", "")
    assert by["d"]["reason"] == "'=HYPERLINK(\"http://x.example\")"  # no formula
    assert float(a["lon"]) == 24.9

    _, gj = await api.call("GET", f"/api/export/jobs?{window}&format=geojson", expect=200)
    feats = {f["id"]: f for f in gj["features"]}
    assert feats["a"]["geometry"]["coordinates"] == [24.9, 60.1]
    assert feats["a"]["properties"]["outcome"] == "completed"
    assert feats["d"]["properties"]["reason"].startswith("=HYPERLINK")  # data, as it is

    # earlier window: nothing; a viewer of another vehicle: only the job on no route
    _, empty = await api.call("GET", f"/api/export/jobs?from_ms={now - 5 * H}&to_ms="
                              f"{now - 4 * H}", expect=200)
    assert empty.strip().count("\n") == 0
    _, theirs = await api.call("GET", f"/api/export/jobs?{window}", vehicles=["v9"],
                               expect=200)
    assert [r["job_id"] for r in csv.DictReader(io.StringIO(theirs))] == ["d"]


async def test_bounded(api, monkeypatch):
    now = await _day(api)
    for q in ("", f"from_ms={now}", f"from_ms={now}&to_ms={now + 32 * 24 * H}",
              f"from_ms={now}&to_ms={now}", f"from_ms=0&to_ms={now}&format=xml"):
        await api.call("GET", f"/api/export/jobs?{q}", expect=400)
    monkeypatch.setattr(export, "MAX_JOBS", 2)
    status, err = await api.call("GET", f"/api/export/jobs?from_ms={now - H}&to_ms={now + H}")
    assert status == 400 and "shorter" in err["error"]


async def test_the_export_query_reads_its_index(store_url):
    """The export's query (the store's own text) is planned on the index `jobs_done`
    (sql/*/0025_edges.sql), not a scan of every job: EXPLAIN QUERY PLAN on SQLite, EXPLAIN on
    PostgreSQL (sequential scans off, so a handful of rows cannot make a scan cheaper)."""
    from backend.store import open_store
    from backend.store.postgres.links import done_jobs_sql as pg_sql
    from backend.store.sqlite.links import done_jobs_sql as sqlite_sql

    store = open_store(store_url)
    await store.open()
    try:
        if store_url.startswith("sqlite"):
            plan = " ".join(str(r[-1]) for r in store._db.execute(
                "EXPLAIN QUERY PLAN " + sqlite_sql("id"), (0, 1, 10)))
        else:
            async with store._pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL enable_seqscan = off")
                plan = " ".join(r[0] for r in await conn.fetch(
                    "EXPLAIN " + pg_sql("id"), 0, 1, 10))
    finally:
        await store.close()
    assert "jobs_done" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # the index gives the order
