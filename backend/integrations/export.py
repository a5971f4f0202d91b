"""Export of what was done (docs/customers.md, "Export"): one row per job that reached its
final state (completed, failed, skipped, cancelled) in a window, with its outcome, times and
positions, as CSV rows or GeoJSON features. Pure: records and transitions in, rows out."""

from __future__ import annotations

from dataclasses import dataclass

from ..dispatch.model import JobRecord, JobState, Route, Transition
from ..hub import iso_time

# The longest window one export covers: a month, as the history API's.
MAX_WINDOW_MS = 31 * 24 * 3600 * 1000
# Jobs in one export at most (~10 MB of CSV): more answers 400 (ask for a shorter window).
MAX_JOBS = 50_000
FINAL = (JobState.COMPLETED, JobState.FAILED, JobState.SKIPPED, JobState.CANCELLED)

COLUMNS = ["job_id", "name", "kind", "outcome", "reason", "address", "lat", "lon",
           "route_id", "vehicle_id", "driver_id", "window_start", "window_end", "assigned_at",
           "en_route_at", "arrived_at", "done_at", "done_by", "done_lat", "done_lon", "late_s"]


@dataclass(frozen=True)
class Done:
    """A job as stored, its transitions in order, and its route (None: none)."""

    record: JobRecord
    transitions: list[Transition]
    route: Route | None = None


def _first(ts: list[Transition], state: JobState) -> Transition | None:
    """The state's first transition not corrected later."""
    corrected = {t.corrects for t in ts if t.corrects}
    return next((t for t in ts if t.to_state is state and t.id not in corrected), None)


def row(d: Done) -> dict:
    rec, job, ts = d.record, d.record.job, d.transitions
    done = next((t for t in reversed(ts) if t.to_state is rec.state), None)
    assigned, en_route = _first(ts, JobState.ASSIGNED), _first(ts, JobState.EN_ROUTE)
    arrived = _first(ts, JobState.ARRIVED)
    window = job.windows[0] if job.windows else None
    late = None
    if arrived is not None and job.windows:
        late = max(0, (arrived.at_ms - max(w.end_ms for w in job.windows)) // 1000)
    return {
        "job_id": job.id, "name": job.name, "kind": job.kind.value, "outcome": rec.state.value,
        "reason": done.reason if done else "", "address": job.place.address,
        "lat": job.place.point.lat, "lon": job.place.point.lon,
        "route_id": d.route.id if d.route else (done.route_id if done else None),
        "vehicle_id": d.route.vehicle_id if d.route else None,
        "driver_id": d.route.driver_id if d.route else None,
        "window_start": iso_time(window.start_ms) if window else None,
        "window_end": iso_time(window.end_ms) if window else None,
        "assigned_at": iso_time(assigned.at_ms) if assigned else None,
        "en_route_at": iso_time(en_route.at_ms) if en_route else None,
        "arrived_at": iso_time(arrived.at_ms) if arrived else None,
        "done_at": iso_time(done.at_ms) if done else None,
        "done_by": f"{done.by.kind.value}:{done.by.id}" if done else None,
        "done_lat": done.lat if done else None, "done_lon": done.lon if done else None,
        "late_s": late,
    }


# Free-text columns (from dispatchers, drivers and other systems): a cell starting with one of
# FORMULA_STARTS is a formula to a spreadsheet, so it gets a leading apostrophe (OWASP's CSV
# injection advice). Numbers are never touched: -0.5 stays a longitude.
TEXT_COLUMNS = frozenset({"job_id", "name", "reason", "address", "done_by", "route_id",
                          "vehicle_id", "driver_id"})
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(column: str, value) -> object:
    if value is None:
        return ""
    if column in TEXT_COLUMNS and isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(rows: list[dict]) -> list[list]:
    return [[_cell(c, r[c]) for c in COLUMNS] for r in rows]


def geojson(rows: list[dict]) -> dict:
    """A FeatureCollection (RFC 7946): each job a Point at its stop, the row as properties."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": r["job_id"],
         "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
         "properties": {k: v for k, v in r.items() if k not in ("lat", "lon")}}
        for r in rows]}
