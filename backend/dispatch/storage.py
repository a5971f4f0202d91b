"""What both stores' dispatch tables share: the query value, the errors, the catalogue tables
and how a transition changes a job's row. No I/O (the SQL lives in the store packages)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import codec
from .model import Depot, Driver, JobState, Transition, VehicleType

# Jobs per listing page: the web app's table pages; a CLI lists all by following `after`.
MAX_JOBS_PAGE = 5_000
DEFAULT_JOBS_PAGE = 500


class StaleState(Exception):
    """A transition's `from_state` is not the job's stored state (someone else changed it
    first): re-read the job and decide again."""

    def __init__(self, job_id: str, stored: str | None):
        super().__init__(f"job {job_id} is {stored or 'unknown'}, not what the change expected")
        self.job_id, self.stored = job_id, stored


class StaleVersion(Exception):
    """A route was changed since the version the caller read."""

    def __init__(self, route_id: str, stored: int | None):
        super().__init__(f"route {route_id} is at version {stored}, the change was based on "
                         "an older one")
        self.route_id, self.stored = route_id, stored


class JobExists(Exception):
    """Jobs with these ids exist with other contents (nothing was stored)."""

    def __init__(self, ids: list[str]):
        super().__init__(f"{len(ids)} job(s) exist with other contents: {', '.join(ids[:5])}")
        self.ids = ids


@dataclass(frozen=True)
class JobQuery:
    states: tuple[JobState, ...] = ()  # () = all
    route_id: str | None = None
    vehicles: frozenset[str] | None = None  # None: all; else unassigned + on their routes
    after: str | None = None  # keyset paging by id
    limit: int = DEFAULT_JOBS_PAGE


@dataclass(frozen=True)
class Catalogue:
    """A table of id → JSON body (vehicle types, drivers, depots)."""

    table: str
    to_dict: Callable
    from_dict: Callable


CATALOGUES = {
    "vehicle_types": Catalogue("vehicle_types", codec.vehicle_type_to_dict,
                               codec.vehicle_type_from_dict),
    "drivers": Catalogue("drivers", codec.driver_to_dict, codec.driver_from_dict),
    "depots": Catalogue("depots", codec.depot_to_dict, codec.depot_from_dict),
}
KIND_OF = {VehicleType: "vehicle_types", Driver: "drivers", Depot: "depots"}


def route_after(t: Transition, route_id: str | None) -> str | None:
    """The job's route after `t`: its new route when assigned, none when unassigned."""
    if t.to_state is JobState.ASSIGNED and t.route_id is not None:
        return t.route_id
    if t.to_state is JobState.UNASSIGNED:
        return None
    return route_id


def transition_row(t: Transition) -> tuple:
    return (t.id, t.job_id, t.from_state.value, t.to_state.value, t.at_ms, t.recorded_ms,
            t.by.kind.value, t.by.id, t.route_id, t.lat, t.lon, t.reason, t.corrects)


TRANSITION_COLUMNS = ("id, job_id, from_state, to_state, at_ms, recorded_ms, actor_kind, "
                      "actor_id, route_id, lat, lon, reason, corrects")


def transition_from_row(r) -> Transition:
    return codec.transition_from_dict({
        "id": r[0], "job_id": r[1], "from": r[2], "to": r[3], "at_ms": r[4],
        "recorded_ms": r[5], "by": {"kind": r[6], "id": r[7]}, "route_id": r[8],
        "lat": r[9], "lon": r[10], "reason": r[11], "corrects": r[12]})


# Open proposals a store keeps: dispatchers compare a few, event-triggered re-plans add one
# each; older open ones are dropped when a new one is kept (approved ones stay as a record).
MAX_OPEN_PROPOSALS = 32
PROPOSAL_STATES = ("open", "approved", "dropped")


@dataclass(frozen=True)
class StoredProposal:
    """A proposal as stored: `body` is planning.kept_to_dict's JSON value."""

    id: str
    created_ms: int
    based_on_version: str
    status: str
    cause: str
    body: dict
    closed_ms: int | None = None
    closed_by: str | None = None
