"""The web app's basemap settings: which style, PMTiles archive and road overlay to draw.

Offline by default: the app ships Natural Earth land and borders (web/, built into
static/app/). `map_style` (a MapLibre style URL), `map_pmtiles` (a local .pmtiles archive, served
here with HTTP range requests) and `map_overlay` (a GeoJSON file of roads or areas drawn over the
land, e.g. the demo's streets) come from the backend config.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from .api.common import error
from .authz import Role, requires

CONFIG_PATH = "/api/map/config"
OVERLAY_PATH = "/api/map/overlay.geojson"
PMTILES_PATH = "/api/map/basemap.pmtiles"


# An overlay may name its source's licence in a top-level "attribution" member, first after
# "type" (backend/dispatch/streetmap.py writes "© OpenStreetMap contributors" there: ODbL asks
# for it on every map); only the file's head is read.
_ATTRIBUTION = re.compile(rb'^\{"type":\s*"FeatureCollection",\s*'
                          rb'"attribution":\s*"([^"\\]{1,200})"')


def overlay_attribution(overlay: str) -> str | None:
    if not overlay:
        return None
    with open(overlay, "rb") as f:
        m = _ATTRIBUTION.match(f.read(512))
    return m.group(1).decode("utf-8", "replace") if m else None


def map_config(style: str, pmtiles: str, overlay: str) -> dict:
    """What GET /api/map/config answers (URLs relative to the backend)."""
    return {"style_url": style or None,
            "pmtiles_url": PMTILES_PATH if pmtiles else None,
            "overlay_url": OVERLAY_PATH if overlay else None,
            "overlay_attribution": overlay_attribution(overlay)}


def add_routes(app: web.Application, style: str = "", pmtiles: str = "",
               overlay: str = "") -> None:
    for path in filter(None, (pmtiles, overlay)):
        if not Path(path).is_file():
            raise ValueError(f"map file not found: {path}")
    body = map_config(style, pmtiles, overlay)

    @requires(Role.VIEWER)
    async def config(request: web.Request) -> web.Response:
        return web.json_response(body)

    @requires(Role.VIEWER)
    async def overlay_file(request: web.Request) -> web.StreamResponse:
        if not overlay:
            raise error(web.HTTPNotFound, "no map overlay configured")
        return web.FileResponse(overlay, headers={"Content-Type": "application/geo+json"})

    @requires(Role.VIEWER)
    async def pmtiles_file(request: web.Request) -> web.StreamResponse:
        if not pmtiles:
            raise error(web.HTTPNotFound, "no PMTiles basemap configured")
        return web.FileResponse(pmtiles)  # aiohttp answers Range requests (206) itself

    app.router.add_get(CONFIG_PATH, config)
    app.router.add_get(OVERLAY_PATH, overlay_file)
    app.router.add_get(PMTILES_PATH, pmtiles_file)
