-- Dispatch (docs/dispatch.md), the same tables as sql/sqlite/0012_dispatch.sql: vehicle
-- types, drivers, depots, the vehicles dispatch plans with, jobs with their current state,
-- routes, and every job transition. Model values are stored as JSON (backend/dispatch/codec.py)
-- beside the columns that are queried. Times are ms since 1970 as bigint (exact: compared with
-- readings' device times to the millisecond).
CREATE TABLE vehicle_types (
    id          text PRIMARY KEY,
    body        jsonb NOT NULL,              -- codec.vehicle_type_to_dict
    updated_ms  bigint NOT NULL
);
CREATE TABLE drivers (
    id          text PRIMARY KEY,
    account_id  text UNIQUE,                -- the login account, once the driver app links one
    body        jsonb NOT NULL,              -- codec.driver_to_dict
    updated_ms  bigint NOT NULL
);
CREATE TABLE depots (
    id          text PRIMARY KEY,
    body        jsonb NOT NULL,              -- codec.depot_to_dict
    updated_ms  bigint NOT NULL
);
CREATE TABLE dispatch_vehicles (
    vehicle_id  text PRIMARY KEY,           -- vehicles.id (not a foreign key: a vehicle may be
    type_id     text NOT NULL,              -- typed before it is provisioned)
    depot_id    text,
    updated_ms  bigint NOT NULL
);
CREATE TABLE jobs (
    id          text PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('unassigned', 'assigned', 'en_route', 'arrived',
                                               'completed', 'failed', 'skipped', 'cancelled')),
    route_id    text,
    body        jsonb NOT NULL,              -- codec.job_to_dict
    created_ms  bigint NOT NULL,
    updated_ms  bigint NOT NULL
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_route ON jobs (route_id) WHERE route_id IS NOT NULL;
CREATE TABLE routes (
    id              text PRIMARY KEY,
    vehicle_id      text NOT NULL,
    status          text NOT NULL CHECK (status IN ('draft', 'dispatched', 'active', 'done',
                                                    'cancelled')),
    version         bigint NOT NULL,       -- grows with every change (stale proposals)
    shift_start_ms  bigint NOT NULL,
    shift_end_ms    bigint NOT NULL,
    body            jsonb NOT NULL,          -- codec.route_to_dict
    updated_ms      bigint NOT NULL
);
CREATE INDEX routes_vehicle ON routes (vehicle_id, shift_start_ms);
CREATE INDEX routes_live ON routes (status) WHERE status IN ('dispatched', 'active');
-- Every change of a job's state, in the order recorded (seq). `id` makes recording
-- idempotent; `corrects` names an earlier transition this one corrects.
CREATE TABLE job_transitions (
    seq         bigserial PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    job_id      text NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    at_ms       bigint NOT NULL,
    recorded_ms bigint NOT NULL,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('person', 'rule', 'vehicle')),
    actor_id    text NOT NULL,
    route_id    text,
    lat         double precision,
    lon         double precision,
    reason      text NOT NULL DEFAULT '',
    corrects    text
);
CREATE INDEX job_transitions_job ON job_transitions (job_id, seq);
