"""Export of what was done (docs/customers.md, "Export"): `GET /api/export/jobs` as CSV or
GeoJSON, bounded by a window of at most 31 days and 50,000 jobs, scoped to what the caller
may see (jobs on no route, and those on routes of its vehicles)."""

from __future__ import annotations

from aiohttp import web

from ..authz import Role, requires
from ..hub import iso_time
from ..integrations import export
from .common import STORE, csv_response, error, principal, window

FORMATS = ("csv", "geojson")


@requires(Role.VIEWER)
async def export_jobs(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "csv")
    if fmt not in FORMATS:
        raise error(web.HTTPBadRequest, "format must be csv or geojson")
    start, end = window(request.query)
    if start is None or end is None:
        raise error(web.HTTPBadRequest, "from and to (or from_ms and to_ms) are required")
    if not 0 < end - start <= export.MAX_WINDOW_MS:
        raise error(web.HTTPBadRequest, "the window's end must be after its start, at most "
                    "31 days later")
    store, who = request.app[STORE], principal(request)
    done = await store.done_jobs(start, end, export.MAX_JOBS + 1)
    if len(done) > export.MAX_JOBS:
        raise error(web.HTTPBadRequest, f"more than {export.MAX_JOBS} jobs were done in this "
                    "window: ask for a shorter one")
    routes: dict[str, object] = {}
    rows = []
    for rec, ts in done:
        rid = rec.route_id or next((t.route_id for t in reversed(ts) if t.route_id), None)
        if rid is not None and rid not in routes:
            routes[rid] = await store.dispatch_route(rid)
        route = routes.get(rid) if rid else None
        if route is not None and not who.may_see(route.vehicle_id):
            continue
        rows.append(export.row(export.Done(rec, ts, route)))
    name = f"jobs-{iso_time(start)[:10]}-{iso_time(end)[:10]}"
    if fmt == "csv":
        return csv_response(export.COLUMNS, export.csv_rows(rows), f"{name}.csv")
    return web.json_response(export.geojson(rows), content_type="application/geo+json",
                             headers={"Content-Disposition":
                                      f'attachment; filename="{name}.geojson"'})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/export/jobs", export_jobs)
