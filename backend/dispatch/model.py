"""The dispatch vocabulary: vehicle types, capacities, skills, drivers, depots, jobs, routes and
job transitions, as small frozen values (docs/dispatch.md).

Other modules (the planner, the store, REST, the driver app) speak in these. No I/O and no
clock: times are ms since 1970 (UTC) like every other time in the project, durations are
seconds. Construction validates ranges and raises `ValueError` with a message that names the
field, so a CSV row or a JSON body turns into a per-row error, never a half-built object.
"""

from __future__ import annotations

import enum
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..emailaddr import is_plain_email

# --- limits --------------------------------------------------------------------------------

# Ids are short opaque strings (our own, or the customer's reference from a CSV); this bounds
# store keys and URLs.
MAX_ID_LEN = 64
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# a login account's name (backend/auth/accounts.py NAME_RE): what a driver's `account_id` holds
ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# An arrival radius below GNSS accuracy (~5 m) would never be entered reliably; above 5 km it
# is no longer a stop but a region (use a geofence).
MIN_RADIUS_M = 5.0
MAX_RADIUS_M = 5_000.0
DEFAULT_RADIUS_M = 50.0
# A service longer than a day is not a visit.
MAX_SERVICE_S = 86_400
# Several windows per job (morning or afternoon) but not a calendar.
MAX_WINDOWS = 8
# Capacity dimensions per vehicle type (kg, pallets, m3, seats …): solvers take a fixed vector.
MAX_DIMENSIONS = 8
# Skills per job or vehicle: a small set of tags ("fridge", "tail-lift", "adr").
MAX_SKILLS = 32
MAX_SKILL_LEN = 32
# Free text: notes and contact fields are shown to drivers, bounded for phones and rows.
MAX_TEXT_LEN = 2_000
MAX_NAME_LEN = 200
# Priority 0 (normal) … 100 (must be served first when not everything fits).
MAX_PRIORITY = 100
# A shift longer than 24 h is not one shift.
MAX_SHIFT_MS = 86_400_000
# Jobs on one route: the web app, the driver's phone and the solver all stay responsive.
MAX_ROUTE_STOPS = 500


# Job ids that are words of the jobs' URLs: `/api/jobs/import` is the CSV import, so a job
# called "import" could never be read or edited at `/api/jobs/{id}` (OpenAPI matches the
# concrete path first). Refused wherever a job is made (REST, CSV, MCP, integrations).
RESERVED_JOB_IDS = frozenset({"import"})


def _check_id(name: str, value: str | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError(f"{name}: 1–{MAX_ID_LEN} of A-Z a-z 0-9 _ . - (as geofence ids), "
                         f"not {value!r}")


def _check_text(name: str, value: str, limit: int = MAX_TEXT_LEN) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{name}: text of at most {limit} characters")


def _check_time(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise ValueError(f"{name}: a time in ms since 1970, not {value!r}")


def _skills(name: str, skills: Iterable[str]) -> frozenset[str]:
    out = frozenset(skills)
    if len(out) > MAX_SKILLS:
        raise ValueError(f"{name}: at most {MAX_SKILLS} skills")
    for s in out:
        if not isinstance(s, str) or not s or len(s) > MAX_SKILL_LEN or not s.isprintable() \
                or "," in s or s != s.strip():
            raise ValueError(f"{name}: a skill is 1–{MAX_SKILL_LEN} characters without commas, "
                             f"not {s!r}")
    return out


# --- places --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """WGS84 degrees."""

    lat: float
    lon: float

    def __post_init__(self):
        for name, v, bound in (("lat", self.lat, 90.0), ("lon", self.lon, 180.0)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                    or not -bound <= v <= bound:
                raise ValueError(f"{name}: a number within ±{bound:g}, not {v!r}")


@dataclass(frozen=True)
class Place:
    """Where a visit happens: a point (what travel times are computed to) and how arrival is
    recognised there: within `radius_m` of the point, or inside the geofence `geofence_id`
    (then the radius is not used for detection)."""

    point: Point
    radius_m: float = DEFAULT_RADIUS_M
    geofence_id: str | None = None
    address: str = ""

    def __post_init__(self):
        r = self.radius_m
        if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) \
                or not MIN_RADIUS_M <= r <= MAX_RADIUS_M:
            raise ValueError(f"radius_m: between {MIN_RADIUS_M:g} and {MAX_RADIUS_M:g} m, "
                             f"not {r!r}")
        _check_id("geofence_id", self.geofence_id, optional=True)
        _check_text("address", self.address, MAX_NAME_LEN)


@dataclass(frozen=True)
class Depot:
    """Where routes start and end."""

    id: str
    name: str
    place: Place

    def __post_init__(self):
        _check_id("id", self.id)
        _check_text("name", self.name, MAX_NAME_LEN)


# --- capacity and vehicles -----------------------------------------------------------------

@dataclass(frozen=True)
class Amounts:
    """Quantities per dimension ("kg", "pallets" …), non-negative integers (solvers take
    integers: express litres or m3 in the unit that makes them whole). A dimension that is
    absent is 0. Used for a vehicle type's capacity and for a job's demand."""

    items: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if len(self.items) > MAX_DIMENSIONS:
            raise ValueError(f"at most {MAX_DIMENSIONS} capacity dimensions")
        names = [n for n, _ in self.items]
        if names != sorted(set(names)):
            raise ValueError("capacity dimensions: unique and sorted (use Amounts.of)")
        for n, v in self.items:
            _check_id("dimension", n)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31:
                raise ValueError(f"{n}: a whole number ≥ 0, not {v!r}")

    @classmethod
    def of(cls, values: Mapping[str, int] | None = None, **kw: int) -> Amounts:
        merged = {**(values or {}), **kw}
        return cls(tuple(sorted((k, v) for k, v in merged.items() if v != 0)))

    def get(self, dimension: str) -> int:
        return dict(self.items).get(dimension, 0)

    def as_dict(self) -> dict[str, int]:
        return dict(self.items)

    @property
    def dimensions(self) -> frozenset[str]:
        return frozenset(n for n, _ in self.items)

    def __add__(self, other: Amounts) -> Amounts:
        d = self.as_dict()
        for n, v in other.items:
            d[n] = d.get(n, 0) + v
        return Amounts.of(d)

    def fits_in(self, capacity: Amounts) -> bool:
        """Every dimension of self within `capacity` (a dimension the vehicle lacks is 0)."""
        return all(v <= capacity.get(n) for n, v in self.items)

    def vector(self, dimensions: Iterable[str]) -> list[int]:
        """The amounts in the order of `dimensions` (what a solver takes)."""
        d = self.as_dict()
        return [d.get(n, 0) for n in dimensions]


class VehicleClass(enum.Enum):
    """What kind of vehicle (speed profile and road access for the planner)."""

    CAR = "car"
    VAN = "van"
    TRUCK = "truck"
    BIKE = "bike"  # bicycles and cargo bikes
    WALK = "walk"  # couriers on foot


@dataclass(frozen=True)
class VehicleType:
    """A kind of vehicle in the fleet: its class, capacity and skills (fridge, tail-lift)."""

    id: str
    name: str
    vehicle_class: VehicleClass = VehicleClass.VAN
    capacity: Amounts = Amounts()
    skills: frozenset[str] = frozenset()

    def __post_init__(self):
        _check_id("id", self.id)
        _check_text("name", self.name, MAX_NAME_LEN)
        if not isinstance(self.vehicle_class, VehicleClass):
            raise ValueError(f"vehicle_class: one of {[c.value for c in VehicleClass]}")
        object.__setattr__(self, "skills", _skills("skills", self.skills))


@dataclass(frozen=True)
class FleetVehicle:
    """A tracked vehicle (the `vehicles` table's id) as dispatch sees it: its type and the
    depot it normally starts from."""

    vehicle_id: str
    type_id: str
    depot_id: str | None = None

    def __post_init__(self):
        _check_id("vehicle_id", self.vehicle_id)
        _check_id("type_id", self.type_id)
        _check_id("depot_id", self.depot_id, optional=True)


@dataclass(frozen=True)
class Driver:
    """A person who drives. `account_id` names the login account the driver app signs in with
    (None: no login); that account then has the driver capability only (docs/driver.md).
    `skills` are the person's (e.g. "adr" certification)."""

    id: str
    display_name: str
    account_id: str | None = None
    phone: str = ""
    skills: frozenset[str] = frozenset()
    active: bool = True

    def __post_init__(self):
        _check_id("id", self.id)
        if not self.display_name.strip():
            raise ValueError("display_name: required")
        _check_text("display_name", self.display_name, MAX_NAME_LEN)
        if self.account_id is not None and not (
                isinstance(self.account_id, str) and ACCOUNT_PATTERN.fullmatch(self.account_id)):
            raise ValueError("account_id: a login account's name (1–64 of letters, digits and "
                             f". _ @ -), not {self.account_id!r}")
        _check_text("phone", self.phone, MAX_NAME_LEN)
        object.__setattr__(self, "skills", _skills("skills", self.skills))


# --- jobs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeWindow:
    """Arrival allowed from `start_ms` to `end_ms` (inclusive); service may run past the end."""

    start_ms: int
    end_ms: int

    def __post_init__(self):
        _check_time("window start", self.start_ms)
        _check_time("window end", self.end_ms)
        if self.end_ms < self.start_ms:
            raise ValueError("time window: its end is before its start")

    def contains(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms <= self.end_ms


@dataclass(frozen=True)
class Contact:
    """Who to call or notify at the stop."""

    name: str = ""
    phone: str = ""
    email: str = ""

    def __post_init__(self):
        for f in ("name", "phone", "email"):
            _check_text(f, getattr(self, f), MAX_NAME_LEN)
        if self.email and not is_plain_email(self.email):  # the dispatch mail goes there
            raise ValueError(f"contact.email: {self.email[:80]!r} is not one plain e-mail "
                             "address")


class JobKind(enum.Enum):
    VISIT = "visit"  # a stop on its own (service, delivery from the depot's load)
    PICKUP = "pickup"  # loads `demand`; its `pair` is the delivery
    DELIVERY = "delivery"  # unloads `demand`; its `pair` is the pickup, visited after it


class JobState(enum.Enum):
    """docs/dispatch.md: unassigned → assigned → en_route → arrived → completed | failed |
    skipped; cancelled by a dispatcher before it is started."""

    UNASSIGNED = "unassigned"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ARRIVED = "arrived"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def started(self) -> bool:
        """The vehicle is committed to it: a re-plan keeps it on its route, in place."""
        return self in (JobState.EN_ROUTE, JobState.ARRIVED)


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.SKIPPED,
                       JobState.CANCELLED})


@dataclass(frozen=True)
class Job:
    """A visit at a place. A pickup-and-delivery pair is two jobs whose `pair` names each
    other (kinds PICKUP and DELIVERY, same demand); the planner puts both on one route,
    pickup first."""

    id: str
    place: Place
    windows: tuple[TimeWindow, ...] = ()  # none: any time within the vehicle's shift
    service_s: int = 0
    demand: Amounts = Amounts()
    skills: frozenset[str] = frozenset()
    priority: int = 0
    kind: JobKind = JobKind.VISIT
    pair: str | None = None
    name: str = ""
    notes: str = ""
    contact: Contact = Contact()

    def __post_init__(self):
        _check_id("id", self.id)
        if self.id in RESERVED_JOB_IDS:
            raise ValueError(f"id: {self.id!r} is reserved (it names /api/jobs/{self.id})")
        if not isinstance(self.place, Place):
            raise ValueError("place: required")
        object.__setattr__(self, "windows", tuple(sorted(self.windows,
                                                         key=lambda w: w.start_ms)))
        if len(self.windows) > MAX_WINDOWS:
            raise ValueError(f"windows: at most {MAX_WINDOWS}")
        for a, b in itertools.pairwise(self.windows):
            if b.start_ms <= a.end_ms:
                raise ValueError("windows: they overlap")
        s = self.service_s
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SERVICE_S:
            raise ValueError(f"service_s: whole seconds from 0 to {MAX_SERVICE_S}, not {s!r}")
        p = self.priority
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= MAX_PRIORITY:
            raise ValueError(f"priority: 0–{MAX_PRIORITY}, not {p!r}")
        object.__setattr__(self, "skills", _skills("skills", self.skills))
        if not isinstance(self.kind, JobKind):
            raise ValueError(f"kind: one of {[k.value for k in JobKind]}")
        _check_id("pair", self.pair, optional=True)
        if (self.kind is JobKind.VISIT) != (self.pair is None):
            raise ValueError("pair: a pickup or delivery names its other half; a visit none")
        if self.pair == self.id:
            raise ValueError("pair: a job cannot pair with itself")
        _check_text("name", self.name, MAX_NAME_LEN)
        _check_text("notes", self.notes)


def check_pairs(jobs: Iterable[Job]) -> list[str]:
    """Problems with pickup-and-delivery pairs in a set of jobs (each a sentence; [] if none):
    each half must exist, name the other, be the other kind and carry the same demand."""
    by_id = {j.id: j for j in jobs}
    problems = []
    for j in by_id.values():
        if j.pair is None:
            continue
        other = by_id.get(j.pair)
        want = JobKind.DELIVERY if j.kind is JobKind.PICKUP else JobKind.PICKUP
        if other is None:
            problems.append(f"{j.id}: its pair {j.pair} does not exist")
        elif other.pair != j.id or other.kind is not want:
            problems.append(f"{j.id}: {j.pair} is not its {want.value}")
        elif other.demand != j.demand:
            problems.append(f"{j.id}: its pair {j.pair} carries a different demand")
    return problems


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: with its current state, the route it is on (if any) and when it last
    changed (the store's view; the planner reads these)."""

    job: Job
    state: JobState = JobState.UNASSIGNED
    route_id: str | None = None
    updated_ms: int = 0


# --- routes --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shift:
    """A vehicle's working hours for one route."""

    start_ms: int
    end_ms: int

    def __post_init__(self):
        _check_time("shift start", self.start_ms)
        _check_time("shift end", self.end_ms)
        if not 0 < self.end_ms - self.start_ms <= MAX_SHIFT_MS:
            raise ValueError("shift: its end must follow its start, at most 24 h later")


@dataclass(frozen=True)
class RouteStop:
    """One job's place in a route, with the times the plan expects (None before planning)."""

    job_id: str
    arrival_ms: int | None = None  # planned arrival
    departure_ms: int | None = None  # planned departure (after waiting and service)

    def __post_init__(self):
        _check_id("job_id", self.job_id)


class RouteStatus(enum.Enum):
    DRAFT = "draft"  # planned or edited, not yet sent to the driver
    DISPATCHED = "dispatched"  # approved: the driver sees it
    ACTIVE = "active"  # the vehicle has started it (arrival detection runs)
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Route:
    """One vehicle's ordered stops for a shift. The vehicle's capacity and skills are copied
    from its type when the route is made (a plan stays valid if the type is edited later);
    `version` grows with every change (a proposal computed on an older version is stale)."""

    id: str
    vehicle_id: str
    shift: Shift
    start_depot: str
    end_depot: str
    capacity: Amounts = Amounts()
    skills: frozenset[str] = frozenset()
    driver_id: str | None = None
    stops: tuple[RouteStop, ...] = ()
    status: RouteStatus = RouteStatus.DRAFT
    version: int = 1

    def __post_init__(self):
        _check_id("id", self.id)
        _check_id("vehicle_id", self.vehicle_id)
        _check_id("start_depot", self.start_depot)
        _check_id("end_depot", self.end_depot)
        _check_id("driver_id", self.driver_id, optional=True)
        object.__setattr__(self, "skills", _skills("skills", self.skills))
        object.__setattr__(self, "stops", tuple(self.stops))
        if len(self.stops) > MAX_ROUTE_STOPS:
            raise ValueError(f"stops: at most {MAX_ROUTE_STOPS} per route")
        ids = [s.job_id for s in self.stops]
        if len(set(ids)) != len(ids):
            raise ValueError("stops: a job appears twice")
        if isinstance(self.version, bool) or not isinstance(self.version, int) \
                or self.version < 1:
            raise ValueError("version: a whole number ≥ 1")

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(s.job_id for s in self.stops)


# --- transitions ---------------------------------------------------------------------------

class ActorKind(enum.Enum):
    PERSON = "person"  # a dispatcher or a driver (account or driver id)
    RULE = "rule"  # a backend rule: the planner, the arrival detector on the backend
    VEHICLE = "vehicle"  # the vehicle itself: its on-board detector


@dataclass(frozen=True)
class Actor:
    """Who made a transition."""

    kind: ActorKind
    id: str

    def __post_init__(self):
        if not isinstance(self.kind, ActorKind):
            raise ValueError(f"actor kind: one of {[k.value for k in ActorKind]}")
        _check_text("actor", self.id, MAX_NAME_LEN)
        if not self.id:
            raise ValueError("actor: required")

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"


@dataclass(frozen=True)
class Transition:
    """One recorded change of a job's state. `id` makes recording idempotent (the same id
    twice is one transition); `at_ms` is when it happened (device time for a detected
    arrival), `recorded_ms` when the backend learnt it; `lat`/`lon` where, if known.
    `corrects` names an earlier transition this one corrects (docs/dispatch.md,
    precedence): announced history is amended, never rewritten."""

    id: str
    job_id: str
    from_state: JobState
    to_state: JobState
    at_ms: int
    by: Actor
    recorded_ms: int
    route_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    reason: str = ""
    corrects: str | None = None

    def __post_init__(self):
        _check_id("id", self.id)
        _check_id("job_id", self.job_id)
        _check_time("at_ms", self.at_ms)
        _check_time("recorded_ms", self.recorded_ms)
        _check_id("route_id", self.route_id, optional=True)
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat/lon: both or neither")
        if self.lat is not None:
            Point(self.lat, self.lon)
        _check_text("reason", self.reason)
        _check_id("corrects", self.corrects, optional=True)


__all__ = [
    "Actor", "ActorKind", "Amounts", "Contact", "Depot", "Driver", "FleetVehicle", "Job",
    "JobKind", "JobRecord", "JobState", "Place", "Point", "Route", "RouteStatus", "RouteStop",
    "Shift",
    "TimeWindow", "Transition", "VehicleClass", "VehicleType", "check_pairs",
]
