"""The tools' output shapes: the SDK turns these into each tool's `outputSchema` and checks
every answer against it (docs/mcp.md). Free-form parts (alert detail, trip rows, findings)
stay `dict[str, Any]`; their fields are documented in docs/alerts.md and docs/maintenance.md."""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

Json = dict[str, Any]


class VehicleRow(TypedDict):
    id: str
    revoked: bool
    last_seen_ms: int | None


class Vehicles(TypedDict):
    vehicles: list[VehicleRow]
    truncated: bool


class GeofenceRow(TypedDict):
    id: str
    name: str | None
    group: str | None
    area: Json | None
    circle: Json | None
    speed_limit_kmh: float | None


class Geofences(TypedDict):
    geofences: list[GeofenceRow]


class Alert(TypedDict):
    id: int
    rule: str
    vehicle: str
    subject: str | None
    start_ms: int
    end_ms: int | None
    peak: float | None
    state: str  # open | closed
    acknowledged_by: str | None
    acknowledged_ms: int | None
    lat: float | None
    lon: float | None
    detail: Json


class Alerts(TypedDict):
    alerts: list[Alert]


class Position(TypedDict):
    time_ms: int
    lat: float
    lon: float
    speed_kmh: float | None
    course_deg: float | None


class VehicleState(TypedDict):
    id: str
    now_ms: int
    position: Position | None
    fix_age_s: float | None
    can: dict[str, Json]  # signal → {value, time_ms}
    open_alerts: list[Alert]


class Route(TypedDict):
    vehicle: str
    from_ms: int
    to_ms: int
    points: int
    step_ms: int | None
    coordinates: list[list[float]]  # [lon, lat]
    times_ms: list[int]
    speeds_kmh: list[float | None]


class Trips(TypedDict):
    vehicle: str
    day: str
    trips: list[Json]  # {start_ms, end_ms, distance_km, max_speed_kmh, points, from, to}
    stops: list[Json]  # {start_ms, end_ms, duration_s, at}
    distance_km: float
    driving_s: float
    stopped_s: float


class FenceRef(TypedDict):
    id: str
    name: str | None


class Presence(TypedDict):
    vehicle: str
    first_inside_ms: int
    last_inside_ms: int
    positions_inside: int


class GeofencePresence(TypedDict):
    geofence: FenceRef
    from_ms: int
    to_ms: int
    vehicles: list[str]
    presence: list[Presence]
    entries: list[Json]  # {vehicle_id, time_ms, lat, lon, epoch, seq, …}


class Bucket(TypedDict):
    start_ms: int
    n: int
    min: float
    max: float
    mean: float


class SignalHistory(TypedDict):
    vehicle: str
    signal: str
    from_ms: int
    to_ms: int
    bucket_ms: int
    samples: int
    truncated: bool
    buckets: list[Bucket]


class CommandSent(TypedDict):
    id: int
    vehicle: str
    name: str
    state: str


class Subscriptions(TypedDict):
    subscriptions: list[Json]  # fields: docs/notifications.md, backend/openapi.yaml


class Subscribed(TypedDict, total=False):
    subscription: Json
    secret: str  # a webhook's signing secret, only in this answer


class Unsubscribed(TypedDict):
    deleted: int


class Service(TypedDict):
    vehicle: str
    interval: str
    by: str  # km | engine_h | days
    every: float
    used: float | None
    remaining: float | None
    state: str  # ok | due | overdue | unknown
    since_ms: int
    source: str  # can-odometer | gps | can-engine-hours | calendar | none


class VehicleMaintenance(TypedDict):
    vehicle: str
    services: list[Service]
    due: bool
    trouble_codes: list[Json]  # {code, controller, proto, state, first_ms, last_ms, count, …}
    open_codes: int


class MaintenanceStatus(TypedDict):
    now_ms: int
    vehicles: list[VehicleMaintenance]
    due_for_service: list[str]
    signal_drift: list[Json]  # health findings with their statistics


class PlannedRoute(TypedDict):
    vehicle: str
    stops: list[str]
    truncated: bool
    travel_s: int
    end_ms: int


class Unplanned(TypedDict):
    job_id: str
    reason: str


class StopEta(TypedDict):
    job_id: str
    eta_ms: int
    begin_ms: int
    departure_ms: int
    wait_s: int
    spread_s: int
    confidence: float
    late: bool


class RouteEtas(TypedDict):
    vehicle: str
    route_id: str
    computed_ms: int | None
    basis: str
    stops: list[StopEta]
    late_risk: list[str]


class WhatIfEtas(TypedDict):
    vehicle: str
    basis: str
    stops: list[StopEta]
    late: list[str]
    status: str


class PlanProposal(TypedDict):
    proposal_id: str
    based_on_version: str
    basis: str
    cost_s: int
    routes: list[PlannedRoute]
    unassigned: list[Unplanned]
    changes: dict[str, int]
    approve: str
    status: str


class DueList(TypedDict):
    now_ms: int
    due: list[Json]  # ServiceStatus.as_json(): docs/maintenance.md#the-due-list
    truncated: bool


class TroubleCodes(TypedDict):
    from_ms: int
    to_ms: int
    dtcs: list[Json]  # docs/maintenance.md#the-trouble-code-workflow
    truncated: bool


class ActionLetters(TypedDict):
    letters: list[Json]  # docs/operations.md#dead-letters-of-vehicle-actions
    truncated: bool


class Forecasts(TypedDict):
    now_ms: int
    forecasts: list[Json]  # docs/maintenance.md#predictions-no-trained-model


class DrivingEvents(TypedDict):
    from_ms: int
    to_ms: int
    events: list[Json]  # docs/driving.md#events
    truncated: bool


class Scorecards(TypedDict):
    from_ms: int
    to_ms: int
    by: str
    scorecards: list[Json]  # docs/driving.md#weekly-scorecards
    weights: dict[str, float]
    idle_weight: float


class Fuel(TypedDict):
    from_ms: int
    to_ms: int
    by: str
    rows: list[Json]  # docs/driving.md#fuel
    truncated: bool
