"""What travels on NATS between nodes (docs/scaling.md §5), checked before use, sans-IO.

Anything on a NATS subject may come from any client the server lets publish there, so a node
treats it as input: size first (before parsing), then JSON without NaN or infinities and with
bounded nesting, then every field a consumer reads, by type and range. `decode_*` raise
`ValueError` naming what is wrong; the caller drops the message and counts it.
"""

from __future__ import annotations

import json
import math
import re

# A position is ~400 bytes and an alert well under 2 KB; 16 KiB leaves room for a long alert
# detail and refuses anything that would cost real parsing time.
MAX_MESSAGE_BYTES = 16 * 1024
# Nesting of any JSON value: a feature is 3 deep, an alert's detail a few more.
MAX_DEPTH = 6
# Properties of a feature or members of an alert: position_feature has 5, an alert 12.
MAX_MEMBERS = 64
MAX_STRING = 1024
# Device times the hub can turn into a date (datetime's year 1..9999), in ms since the epoch.
MAX_TIME_MS = 253_402_300_799_999
# the broader of the two vehicle-id rules (the wire's, and the API's which adds ':')
VEHICLE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number here")


def parse(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES,
          max_members: int = MAX_MEMBERS) -> dict:
    """A JSON object of at most `max_bytes`, without NaN/Infinity, depth ≤ MAX_DEPTH."""
    if len(data) > max_bytes:
        raise ValueError(f"message of {len(data)} bytes (at most {max_bytes})")
    try:
        body = json.loads(data, parse_constant=_no_constant)
    except (UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    _bounded(body, 1, max_members)
    return body


def _bounded(value, depth: int, max_members: int = MAX_MEMBERS) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        if len(value) > max_members:
            raise ValueError(f"more than {max_members} members")
        for k, v in value.items():
            _bounded(k, depth, max_members)
            _bounded(v, depth + 1, max_members)
    elif isinstance(value, list):
        if len(value) > max_members:
            raise ValueError(f"more than {max_members} items")
        for v in value:
            _bounded(v, depth + 1, max_members)
    elif isinstance(value, str) and len(value) > MAX_STRING:
        raise ValueError(f"a string longer than {MAX_STRING}")


def vehicle_id(value) -> str:
    if not isinstance(value, str) or not VEHICLE_ID.match(value):
        raise ValueError(f"not a vehicle id: {value!r:.80}")
    return value


def _int(value, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what} must be an integer within {low}..{high}")
    return value


def _number(value, low: float, high: float, what: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{what} must be a number within {low}..{high}")
    return value


def _scalar(value, what: str) -> None:
    if value is None or type(value) in (bool, str):
        return
    if type(value) is int and abs(value) <= 2**53:
        return
    if type(value) is float:  # finite: parse() refused NaN and infinities
        return
    raise ValueError(f"{what} must be a scalar")


def decode_position(data: bytes, vehicle: str) -> tuple[int, dict, int | None]:
    """(time_ms, GeoJSON feature, published_ms or None) of a `fleet.pos.<vehicle>` message."""
    body = parse(data)
    time_ms = _int(body.get("time_ms"), 0, MAX_TIME_MS, "time_ms")
    feature = body.get("feature")
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValueError("feature must be a GeoJSON Feature")
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        raise ValueError("feature geometry must be a Point")
    coords = geometry.get("coordinates")
    if not isinstance(coords, list) or len(coords) != 2:
        raise ValueError("a Point has [lon, lat]")
    _number(coords[0], -180, 180, "longitude")
    _number(coords[1], -90, 90, "latitude")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise ValueError("feature properties must be an object")
    for key, value in props.items():
        _scalar(value, f"property {key!r:.40}")
    if props.get("vehicle") != vehicle:
        raise ValueError("the feature's vehicle is not the subject's")
    sent = body.get("published_ms")
    return time_ms, feature, sent if type(sent) is int and sent >= 0 else None


def decode_alert(data: bytes, vehicle: str) -> dict:
    """The alert of a `fleet.alert.<vehicle>` message (the hub reads its vehicle and rule)."""
    alert = parse(data).get("alert")
    if not isinstance(alert, dict):
        raise ValueError("alert must be an object")
    if vehicle_id(alert.get("vehicle")) != vehicle:
        raise ValueError("the alert's vehicle is not the subject's")
    if not isinstance(alert.get("rule"), str) or not alert["rule"]:
        raise ValueError("alert rule must be a string")
    return alert


def decode_wake(data: bytes) -> str:
    """The vehicle of a `fleet.cmd.wake` message."""
    return vehicle_id(parse(data).get("vehicle"))


# Dispatch changes (docs/dispatch.md, "REST, CLI, live"): a route of up to 500 stops
# (model.MAX_ROUTE_STOPS) or its ETAs is the largest, ~100 bytes a stop; a proposal's diff
# names up to a plan's jobs. 512 KiB stays under nats-server's default 1 MiB payload.
MAX_DISPATCH_BYTES = 512 * 1024
# Items of one list (a route's stops, a diff's changes): a plan's jobs at most.
MAX_DISPATCH_ITEMS = 2_000
# What the hub publishes on `dispatch` and `route:<id>` (Hub.publish_dispatch's `field`).
DISPATCH_FIELDS = frozenset({"job", "route", "transition", "eta", "proposal"})
DISPATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


def decode_dispatch(data: bytes) -> tuple[str, dict, str | None, str | None]:
    """(field, payload, vehicle or None, route id or None) of a `fleet.dispatch` message."""
    body = parse(data, MAX_DISPATCH_BYTES, MAX_DISPATCH_ITEMS)
    field = body.get("field")
    if field not in DISPATCH_FIELDS:
        raise ValueError(f"field must be one of {sorted(DISPATCH_FIELDS)}")
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise ValueError("payload must be an object")
    vehicle = body.get("vehicle")
    if vehicle is not None:
        vehicle_id(vehicle)
    route = body.get("route_id")
    if route is not None and (not isinstance(route, str) or not DISPATCH_ID.match(route)):
        raise ValueError(f"not a route id: {route!r:.80}")
    return field, payload, vehicle, route
