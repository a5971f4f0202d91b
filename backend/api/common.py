"""What the route modules share: app keys, JSON errors, query parsing, vehicle visibility."""

from __future__ import annotations

import csv
import io
import json

from aiohttp import web

from .. import queries
from ..audit import audit  # noqa: F401 (the route modules' one import)
from ..authz import PRINCIPAL, Principal

STORE = web.AppKey("fleet.store", object)
GATEWAY = web.AppKey("fleet.gateway", object)
HUB = web.AppKey("fleet.hub", object)


def error(exc_class: type[web.HTTPError], text: str) -> web.HTTPError:
    """An HTTP error with the API's JSON body {"error": text}, to raise."""
    return exc_class(text=json.dumps({"error": text}), content_type="application/json")


def principal(request: web.Request) -> Principal:
    p = request.get(PRINCIPAL)
    if p is None:  # the access middleware sets it for every non-public route
        raise error(web.HTTPUnauthorized, "authentication required")
    return p


def visible(request: web.Request, vehicle: str | None = None) -> str:
    """The path's vehicle, or 404 if the principal may not see it (as if it did not exist)."""
    vehicle = vehicle if vehicle is not None else request.match_info["vehicle"]
    if not principal(request).may_see(vehicle):
        raise error(web.HTTPNotFound, f"unknown vehicle {vehicle!r}")
    return vehicle


def int_param(query, key: str, lo: int | None = None, hi: int | None = None) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise error(web.HTTPBadRequest, f"{key} must be an integer") from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise error(web.HTTPBadRequest, f"{key} must be in [{lo}, {hi}]")
    return number


def window(query) -> tuple[int | None, int | None]:
    """The (from, to) of a time-window query: `from_ms`/`to_ms`, or ISO 8601 `from`/`to`."""
    try:
        return (queries.parse_time(query.get("from_ms") or query.get("from")),
                queries.parse_time(query.get("to_ms") or query.get("to")))
    except ValueError as exc:
        raise error(web.HTTPBadRequest, f"bad time: {exc}") from None


def wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise error(web.HTTPBadRequest, "format must be json or csv")
    return fmt == "csv"


def csv_response(header: list[str], rows: list[list], filename: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 line ends
    writer.writerow(header)
    writer.writerows(rows)
    return web.Response(text=out.getvalue(), content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


async def read_json(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError:
        raise error(web.HTTPBadRequest, "the body must be JSON") from None
