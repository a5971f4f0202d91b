"""What the route modules share: app keys, JSON errors, query parsing, vehicle visibility."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

from aiohttp import web

from ..audit import audit  # noqa: F401 (the route modules' one import)
from ..authz import PRINCIPAL, Principal

# Times the API takes (query parameters), in epoch ms: 1970 .. 2100-01-01. Readings from
# outside a sane window never reach a store, so no question needs other times, and every ISO
# date an answer derives from them is one `datetime` can write.
MAX_TIME_MS = 4_102_444_800_000
# ISO 8601 as the spec's `from`/`to` accept it: a date, optionally a time (to microseconds)
# and an offset; naive means UTC.
ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
                      r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)?"
                      r"(?:Z|[+-][0-9]{2}:[0-9]{2})?")
INTEGER = re.compile(r"-?[0-9]{1,19}")  # a query integer: digits, no sign but -, no _ or spaces
VEHICLE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # what the CLI and the agent config accept

STORE = web.AppKey("fleet.store", object)
GATEWAY = web.AppKey("fleet.gateway", object)
HUB = web.AppKey("fleet.hub", object)
# the backend's MaintenanceMonitor (backend/maintenance/monitor.py), when it runs one
MAINTENANCE = web.AppKey("fleet.maintenance", object)
# the backend's driving.thresholds.DrivingConfig; absent: the defaults per vehicle class
DRIVING = web.AppKey("fleet.driving", object)


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
    if not VEHICLE_ID.fullmatch(vehicle) or not principal(request).may_see(vehicle):
        raise error(web.HTTPNotFound, f"unknown vehicle {vehicle!r}")
    return vehicle


def int_param(query, key: str, lo: int | None = None, hi: int | None = None) -> int | None:
    value = query.get(key)
    if value is None:
        return None
    if not INTEGER.fullmatch(value):
        raise error(web.HTTPBadRequest, f"{key} must be an integer")
    number = int(value)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise error(web.HTTPBadRequest, f"{key} must be in [{lo}, {hi}]")
    return number


def iso_param(query, key: str) -> int | None:
    """An ISO 8601 query parameter (`ISO_TIME`) as epoch ms within [0, MAX_TIME_MS]."""
    value = query.get(key)
    if value is None:
        return None
    if not ISO_TIME.fullmatch(value):
        raise error(web.HTTPBadRequest, f"{key} must be an ISO 8601 date or time")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:  # a day or hour that does not exist
        raise error(web.HTTPBadRequest, f"bad {key}: {exc}") from None
    ms = round((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)
    if not 0 <= ms <= MAX_TIME_MS:
        raise error(web.HTTPBadRequest, f"{key} must be within 1970..2100")
    return ms


def time_param(query, key: str) -> int | None:
    """An epoch-ms query parameter within [0, MAX_TIME_MS]."""
    return int_param(query, key, lo=0, hi=MAX_TIME_MS)


def window(query) -> tuple[int | None, int | None]:
    """The (from, to) of a time-window query: `from_ms`/`to_ms`, or ISO 8601 `from`/`to`
    (every one given is checked, also when its `_ms` twin wins)."""
    start_iso, end_iso = iso_param(query, "from"), iso_param(query, "to")
    start, end = time_param(query, "from_ms"), time_param(query, "to_ms")
    return (start if start is not None else start_iso, end if end is not None else end_iso)


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
