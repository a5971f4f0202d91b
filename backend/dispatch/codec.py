"""The dispatch model as JSON (REST bodies, hub messages, the store's JSON columns) and back.

`*_from_dict` take what a browser or a client sent: hostile until checked. They refuse unknown
fields (a typo must not be silently dropped), wrong types and out-of-range values with one
`ValueError` whose message names the field. Times are ms since 1970 or ISO 8601 strings
(naive means UTC), as elsewhere in the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from .model import (
    MAX_ROUTE_STOPS,
    MAX_WINDOWS,
    Actor,
    ActorKind,
    Amounts,
    Contact,
    Depot,
    Driver,
    Job,
    JobKind,
    JobRecord,
    JobState,
    Place,
    Point,
    Route,
    RouteStatus,
    RouteStop,
    Shift,
    TimeWindow,
    Transition,
    VehicleClass,
    VehicleType,
)


def _obj(d, what: str, allowed: set[str], required: set[str] = frozenset()) -> Mapping:
    if not isinstance(d, Mapping):
        raise ValueError(f"{what}: a JSON object")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ValueError(f"{what}: unknown field {unknown[0]!r}")
    missing = sorted(required - set(d))
    if missing:
        raise ValueError(f"{what}: {missing[0]} is required")
    return d


def _str(d: Mapping, key: str, default: str = "") -> str:
    """An optional string field: absent is `default`; null is refused like any non-string
    (only the fields read with _opt_str may be null)."""
    v = d.get(key, default)
    if not isinstance(v, str):
        raise ValueError(f"{key}: a string")
    return v


def _opt_str(d: Mapping, key: str) -> str | None:
    v = d.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ValueError(f"{key}: a string")
    return v


def _int(d: Mapping, key: str, default: int = 0) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise ValueError(f"{key}: a whole number, not {v!r}")
    return v


def _num(d: Mapping, key: str):
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{key}: a number, not {v!r}")
    return v


def parse_time(value, what: str) -> int:
    """ms since 1970 from an integer or an ISO 8601 string (naive: UTC)."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: a time")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what}: not a time: {value!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return round(dt.timestamp() * 1000)
    raise ValueError(f"{what}: a time (ms since 1970 or ISO 8601), not {value!r}")


def _enum(cls, value, what: str):
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{what}: one of {', '.join(e.value for e in cls)}, "
                         f"not {value!r}") from None


def _skills(d: Mapping, key: str = "skills") -> frozenset[str]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError(f"{key}: a list of strings")
    return frozenset(v)


def amounts_from(v, what: str) -> Amounts:
    if not isinstance(v, Mapping):
        raise ValueError(f"{what}: an object of dimension → whole number")
    for k, n in v.items():
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValueError(f"{what}.{k}: a whole number, not {n!r}")
    return Amounts.of(dict(v))


# --- places --------------------------------------------------------------------------------

def place_to_dict(p: Place) -> dict:
    return {"lat": p.point.lat, "lon": p.point.lon, "radius_m": p.radius_m,
            "geofence_id": p.geofence_id, "address": p.address}


def place_from_dict(d) -> Place:
    d = _obj(d, "place", {"lat", "lon", "radius_m", "geofence_id", "address"}, {"lat", "lon"})
    return Place(Point(_num(d, "lat"), _num(d, "lon")),
                 _num(d, "radius_m") if "radius_m" in d else 50.0,
                 _opt_str(d, "geofence_id"), _str(d, "address"))


def depot_to_dict(x: Depot) -> dict:
    return {"id": x.id, "name": x.name, "place": place_to_dict(x.place)}


def depot_from_dict(d, id_: str | None = None) -> Depot:
    d = _obj(d, "depot", {"id", "name", "place"}, {"place"})
    return Depot(id_ or _str(d, "id"), _str(d, "name"), place_from_dict(d["place"]))


# --- vehicles and drivers ------------------------------------------------------------------

def vehicle_type_to_dict(t: VehicleType) -> dict:
    return {"id": t.id, "name": t.name, "class": t.vehicle_class.value,
            "capacity": t.capacity.as_dict(), "skills": sorted(t.skills)}


def vehicle_type_from_dict(d, id_: str | None = None) -> VehicleType:
    d = _obj(d, "vehicle type", {"id", "name", "class", "capacity", "skills"})
    return VehicleType(id_ or _str(d, "id"), _str(d, "name"),
                       _enum(VehicleClass, d.get("class", "van"), "class"),
                       amounts_from(d.get("capacity", {}), "capacity"), _skills(d))


def driver_to_dict(x: Driver) -> dict:
    return {"id": x.id, "display_name": x.display_name, "account_id": x.account_id,
            "phone": x.phone, "skills": sorted(x.skills), "active": x.active}


def driver_from_dict(d, id_: str | None = None) -> Driver:
    d = _obj(d, "driver", {"id", "display_name", "account_id", "phone", "skills", "active"},
             {"display_name"})
    active = d.get("active", True)
    if not isinstance(active, bool):
        raise ValueError("active: true or false")
    return Driver(id_ or _str(d, "id"), _str(d, "display_name"), _opt_str(d, "account_id"),
                  _str(d, "phone"), _skills(d), active)


# --- jobs ----------------------------------------------------------------------------------

JOB_FIELDS = {"id", "name", "kind", "pair", "place", "windows", "service_s", "demand",
              "skills", "priority", "notes", "contact"}


def window_from(d, what: str = "window") -> TimeWindow:
    d = _obj(d, what, {"start_ms", "end_ms", "start", "end"})
    start = d.get("start_ms", d.get("start"))
    end = d.get("end_ms", d.get("end"))
    if start is None or end is None:
        raise ValueError(f"{what}: a start and an end")
    return TimeWindow(parse_time(start, f"{what} start"), parse_time(end, f"{what} end"))


def job_to_dict(j: Job) -> dict:
    return {"id": j.id, "name": j.name, "kind": j.kind.value, "pair": j.pair,
            "place": place_to_dict(j.place),
            "windows": [{"start_ms": w.start_ms, "end_ms": w.end_ms} for w in j.windows],
            "service_s": j.service_s, "demand": j.demand.as_dict(), "skills": sorted(j.skills),
            "priority": j.priority, "notes": j.notes,
            "contact": {"name": j.contact.name, "phone": j.contact.phone,
                        "email": j.contact.email}}


def job_from_dict(d, id_: str | None = None) -> Job:
    d = _obj(d, "job", JOB_FIELDS, {"place"})
    windows = d.get("windows", [])
    if not isinstance(windows, list) or len(windows) > MAX_WINDOWS:
        raise ValueError(f"windows: a list of at most {MAX_WINDOWS}")
    c = _obj(d.get("contact", {}), "contact", {"name", "phone", "email"})
    return Job(
        id_ or _str(d, "id"), place_from_dict(d["place"]),
        tuple(window_from(w) for w in windows),
        _int(d, "service_s"), amounts_from(d.get("demand", {}), "demand"), _skills(d),
        _int(d, "priority"), _enum(JobKind, d.get("kind", "visit"), "kind"),
        _opt_str(d, "pair"), _str(d, "name"), _str(d, "notes"),
        Contact(_str(c, "name"), _str(c, "phone"), _str(c, "email")))


def record_to_dict(r: JobRecord) -> dict:
    return {**job_to_dict(r.job), "state": r.state.value, "route_id": r.route_id,
            "updated_ms": r.updated_ms}


# --- routes --------------------------------------------------------------------------------

def route_to_dict(r: Route) -> dict:
    return {"id": r.id, "vehicle_id": r.vehicle_id, "status": r.status.value,
            "version": r.version,
            "shift": {"start_ms": r.shift.start_ms, "end_ms": r.shift.end_ms},
            "start_depot": r.start_depot, "end_depot": r.end_depot,
            "capacity": r.capacity.as_dict(), "skills": sorted(r.skills),
            "driver_id": r.driver_id,
            "stops": [{"job_id": s.job_id, "arrival_ms": s.arrival_ms,
                       "departure_ms": s.departure_ms} for s in r.stops]}


def route_from_dict(d, id_: str | None = None) -> Route:
    d = _obj(d, "route", {"id", "vehicle_id", "status", "version", "shift", "start_depot",
                          "end_depot", "capacity", "skills", "driver_id", "stops"},
             {"vehicle_id", "shift", "start_depot"})
    stops = d.get("stops", [])
    if not isinstance(stops, list) or len(stops) > MAX_ROUTE_STOPS:
        raise ValueError(f"stops: a list of at most {MAX_ROUTE_STOPS}")
    out = []
    for s in stops:
        s = _obj(s, "stop", {"job_id", "arrival_ms", "departure_ms"}, {"job_id"})
        out.append(RouteStop(_str(s, "job_id"),
                             None if s.get("arrival_ms") is None else _int(s, "arrival_ms"),
                             None if s.get("departure_ms") is None
                             else _int(s, "departure_ms")))
    shift = window_from(d["shift"], "shift")
    return Route(id_ or _str(d, "id"), _str(d, "vehicle_id"),
                 Shift(shift.start_ms, shift.end_ms), _str(d, "start_depot"),
                 _str(d, "end_depot") or _str(d, "start_depot"),
                 amounts_from(d.get("capacity", {}), "capacity"), _skills(d),
                 _opt_str(d, "driver_id"), tuple(out),
                 _enum(RouteStatus, d.get("status", "draft"), "status"),
                 _int(d, "version", 1))


# --- transitions ---------------------------------------------------------------------------

def transition_to_dict(t: Transition) -> dict:
    return {"id": t.id, "job_id": t.job_id, "from": t.from_state.value, "to": t.to_state.value,
            "at_ms": t.at_ms, "recorded_ms": t.recorded_ms,
            "by": {"kind": t.by.kind.value, "id": t.by.id}, "route_id": t.route_id,
            "lat": t.lat, "lon": t.lon, "reason": t.reason, "corrects": t.corrects}


def transition_from_dict(d) -> Transition:
    """A stored transition back (trusted shape: written by transition_to_dict)."""
    return Transition(d["id"], d["job_id"], JobState(d["from"]), JobState(d["to"]),
                      d["at_ms"], Actor(ActorKind(d["by"]["kind"]), d["by"]["id"]),
                      d["recorded_ms"], d.get("route_id"), d.get("lat"), d.get("lon"),
                      d.get("reason", ""), d.get("corrects"))
