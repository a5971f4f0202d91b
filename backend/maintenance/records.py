"""A service record as people enter it (REST API, CLI, web app form): validated and bounded.

Pure: `parse_service` takes the untrusted fields and `now`, and returns a `ServiceRecord` or
raises ValueError naming the field; `record_json` is the API's shape of a stored record.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from ..hub import iso_time

MAX_WORK_CHARS = 2000  # a work order's description; longer belongs in a document system
MAX_WHO_CHARS = 200  # a person's or a workshop's name
MAX_INTERVAL_CHARS = 64  # interval names are config keys
MAX_ODOMETER_KM = 10_000_000  # 250 times around the Earth: beyond any vehicle's life
MAX_ENGINE_H = 1_000_000  # over a century of running
MAX_COST = 1_000_000_000  # above any single service, in any currency a fleet counts in
# a service may be entered late (paper records), never ahead of now beyond clock skew
MAX_AHEAD_MS = 3_600_000
MIN_TIME_MS = 0  # 1970; the API's window (backend/api/common.MAX_TIME_MS) bounds the rest
ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
                      r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)?"
                      r"(?:Z|[+-][0-9]{2}:[0-9]{2})?")
ALLOWED = frozenset({"interval", "time", "odometer_km", "engine_h", "work", "cost", "who"})


@dataclass(frozen=True)
class ServiceRecord:
    interval: str
    done_ms: int
    odometer_km: float | None
    engine_h: float | None
    work: str
    cost: float | None
    who: str


def _number(body: dict, key: str, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or not 0 <= value <= hi:
        raise ValueError(f"{key} must be a number in [0, {hi}]")
    return float(value)


def _text(body: dict, key: str, limit: int) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{key} must be text of at most {limit} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise ValueError(f"{key} must not hold control characters")
    return value.strip()


def _time(value: object, now_ms: int) -> int:
    if value is None:
        return now_ms
    if not isinstance(value, str) or not ISO_TIME.fullmatch(value):
        raise ValueError("time must be an ISO 8601 date or time")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:  # a day or an hour that does not exist
        raise ValueError(f"bad time: {exc}") from None
    ms = round((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)
    if not MIN_TIME_MS <= ms <= now_ms + MAX_AHEAD_MS:
        raise ValueError("time must be after 1970 and not in the future")
    return ms


def parse_service(body: object, intervals: frozenset[str] | None, now_ms: int,
                  caller: str) -> ServiceRecord:
    """A record from untrusted JSON-like `body`. `intervals`: the configured interval names
    (None: not known here, any name of the right shape); `caller` is `who` by default."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - ALLOWED
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    interval = body.get("interval")
    if not isinstance(interval, str) or not 1 <= len(interval) <= MAX_INTERVAL_CHARS:
        raise ValueError(f"interval must be 1..{MAX_INTERVAL_CHARS} characters")
    if intervals is not None and interval not in intervals:
        raise ValueError(f"unknown interval {interval!r} (configured: "
                         f"{', '.join(sorted(intervals)) or 'none'})")
    return ServiceRecord(
        interval=interval, done_ms=_time(body.get("time"), now_ms),
        odometer_km=_number(body, "odometer_km", MAX_ODOMETER_KM),
        engine_h=_number(body, "engine_h", MAX_ENGINE_H),
        work=_text(body, "work", MAX_WORK_CHARS),
        cost=_number(body, "cost", MAX_COST),
        who=_text(body, "who", MAX_WHO_CHARS) or caller)


def record_json(row: dict) -> dict:
    """The API's ServiceRecord (backend/openapi.yaml) of a stored row (store.list_services)."""
    return {"id": row["id"], "vehicle": row["vehicle_id"], "interval": row["interval"],
            "time_ms": row["done_ms"], "time": iso_time(row["done_ms"]),
            "odometer_km": row["odometer_km"], "engine_h": row["engine_h"],
            "work": row["note"], "cost": row["cost"], "who": row["recorded_by"]}


def row_of(service_id: int, vehicle: str, rec: ServiceRecord) -> dict:
    """The stored row of `rec` as store.list_services gives it, without reading it back."""
    return {"id": service_id, "vehicle_id": vehicle, "interval": rec.interval,
            "done_ms": rec.done_ms, "odometer_km": rec.odometer_km, "engine_h": rec.engine_h,
            "note": rec.work, "cost": rec.cost, "recorded_by": rec.who}
