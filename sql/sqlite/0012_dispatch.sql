-- Dispatch (docs/dispatch.md): vehicle types, drivers, depots, the vehicles dispatch plans
-- with, jobs with their current state, routes, and every job transition. Model values are
-- stored as JSON (backend/dispatch/codec.py) beside the columns that are queried. Times are
-- ms since 1970 (device time where detected).
CREATE TABLE vehicle_types (
    id          TEXT PRIMARY KEY,
    body        TEXT NOT NULL,              -- codec.vehicle_type_to_dict
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE drivers (
    id          TEXT PRIMARY KEY,
    account_id  TEXT UNIQUE,                -- the login account, once the driver app links one
    body        TEXT NOT NULL,              -- codec.driver_to_dict
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE depots (
    id          TEXT PRIMARY KEY,
    body        TEXT NOT NULL,              -- codec.depot_to_dict
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE dispatch_vehicles (
    vehicle_id  TEXT PRIMARY KEY,           -- vehicles.id (not a foreign key: a vehicle may be
    type_id     TEXT NOT NULL,              -- typed before it is provisioned)
    depot_id    TEXT,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('unassigned', 'assigned', 'en_route', 'arrived',
                                               'completed', 'failed', 'skipped', 'cancelled')),
    route_id    TEXT,
    body        TEXT NOT NULL,              -- codec.job_to_dict
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_route ON jobs (route_id) WHERE route_id IS NOT NULL;
CREATE TABLE routes (
    id              TEXT PRIMARY KEY,
    vehicle_id      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft', 'dispatched', 'active', 'done',
                                                    'cancelled')),
    version         INTEGER NOT NULL,       -- grows with every change (stale proposals)
    shift_start_ms  INTEGER NOT NULL,
    shift_end_ms    INTEGER NOT NULL,
    body            TEXT NOT NULL,          -- codec.route_to_dict
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX routes_vehicle ON routes (vehicle_id, shift_start_ms);
CREATE INDEX routes_live ON routes (status) WHERE status IN ('dispatched', 'active');
-- Every change of a job's state, in the order recorded (seq). `id` makes recording
-- idempotent; `corrects` names an earlier transition this one corrects.
CREATE TABLE job_transitions (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    job_id      TEXT NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('person', 'rule', 'vehicle')),
    actor_id    TEXT NOT NULL,
    route_id    TEXT,
    lat         REAL,
    lon         REAL,
    reason      TEXT NOT NULL DEFAULT '',
    corrects    TEXT
);
CREATE INDEX job_transitions_job ON job_transitions (job_id, seq);
