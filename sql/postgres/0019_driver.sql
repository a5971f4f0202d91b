-- The driver app (docs/driver.md): every driver action as applied (exactly once, by its key;
-- in the order its device made it), messages between dispatch and drivers, and
-- proof-of-delivery images. Mirrors sql/sqlite/0019_driver.sql.
CREATE TABLE driver_actions (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- the order applied
    key           text NOT NULL UNIQUE,    -- the device's idempotency key
    digest        text NOT NULL,           -- sha256 of the action: same key, other body → 409
    device_id     text NOT NULL,
    device_seq    bigint NOT NULL,        -- the device's count: the order the actions were done
    driver_id     text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('arrive', 'complete', 'fail', 'pod', 'message')),
    job_id        text,
    route_id      text,
    vehicle_id    text,                    -- the route's vehicle (who may see it)
    body          text NOT NULL,           -- the action as sent (backend/driver/actions.py)
    outcome       text NOT NULL CHECK (outcome IN ('applied', 'conflict')),
    detail        text NOT NULL DEFAULT '',
    transition_id text,                    -- the job transition it recorded, if any
    received_ms   bigint NOT NULL,
    via           text NOT NULL,           -- 'app' (HTTP) or 'vehicle' (the agent's journal)
    UNIQUE (device_id, device_seq)
);
CREATE INDEX driver_actions_driver ON driver_actions (driver_id, seq);
CREATE INDEX driver_actions_job ON driver_actions (job_id, seq);
CREATE INDEX driver_actions_conflicts ON driver_actions (seq) WHERE outcome = 'conflict';
CREATE TABLE driver_messages (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,      -- idempotency: the action's key or the request's id
    vehicle_id  text,
    driver_id   text,
    direction   text NOT NULL CHECK (direction IN ('to_driver', 'from_driver')),
    author      text NOT NULL,
    text        text NOT NULL,
    sent_ms     bigint NOT NULL
);
CREATE INDEX driver_messages_driver ON driver_messages (driver_id, seq);
CREATE INDEX driver_messages_vehicle ON driver_messages (vehicle_id, seq);
-- Proof-of-delivery images, re-encoded without metadata (backend/driver/images.py), in the
-- database: backed up, replicated and removed with everything else.
CREATE TABLE driver_files (
    id          text PRIMARY KEY,          -- images.file_id
    driver_id   text NOT NULL,
    vehicle_id  text,                      -- the shift's vehicle when uploaded (who may see it)
    job_id      text,
    kind        text NOT NULL CHECK (kind IN ('photo', 'signature')),
    media_type  text NOT NULL,
    data        bytea NOT NULL,
    created_ms  bigint NOT NULL
);
CREATE INDEX driver_files_job ON driver_files (job_id);
