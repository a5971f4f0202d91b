-- The driver app (docs/driver.md): every driver action as applied (exactly once, by its key;
-- in the order its device made it), messages between dispatch and drivers, and
-- proof-of-delivery images. Mirrors sql/postgres/0019_driver.sql.
CREATE TABLE driver_actions (
    seq           INTEGER PRIMARY KEY,     -- the order applied
    key           TEXT NOT NULL UNIQUE,    -- the device's idempotency key
    digest        TEXT NOT NULL,           -- sha256 of the action: same key, other body → 409
    device_id     TEXT NOT NULL,
    device_seq    INTEGER NOT NULL,        -- the device's count: the order the actions were done
    driver_id     TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('arrive', 'complete', 'fail', 'pod', 'message')),
    job_id        TEXT,
    route_id      TEXT,
    vehicle_id    TEXT,                    -- the route's vehicle (who may see it)
    body          TEXT NOT NULL,           -- the action as sent (backend/driver/actions.py)
    outcome       TEXT NOT NULL CHECK (outcome IN ('applied', 'conflict')),
    detail        TEXT NOT NULL DEFAULT '',
    transition_id TEXT,                    -- the job transition it recorded, if any
    received_ms   INTEGER NOT NULL,
    via           TEXT NOT NULL,           -- 'app' (HTTP) or 'vehicle' (the agent's journal)
    UNIQUE (device_id, device_seq)
);
CREATE INDEX driver_actions_driver ON driver_actions (driver_id, seq);
CREATE INDEX driver_actions_job ON driver_actions (job_id, seq);
CREATE INDEX driver_actions_conflicts ON driver_actions (seq) WHERE outcome = 'conflict';
CREATE TABLE driver_messages (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,      -- idempotency: the action's key or the request's id
    vehicle_id  TEXT,
    driver_id   TEXT,
    direction   TEXT NOT NULL CHECK (direction IN ('to_driver', 'from_driver')),
    author      TEXT NOT NULL,
    text        TEXT NOT NULL,
    sent_ms     INTEGER NOT NULL
);
CREATE INDEX driver_messages_driver ON driver_messages (driver_id, seq);
CREATE INDEX driver_messages_vehicle ON driver_messages (vehicle_id, seq);
-- Proof-of-delivery images, re-encoded without metadata (backend/driver/images.py), in the
-- database: backed up, replicated and removed with everything else.
CREATE TABLE driver_files (
    id          TEXT PRIMARY KEY,          -- images.file_id
    driver_id   TEXT NOT NULL,
    vehicle_id  TEXT,                      -- the shift's vehicle when uploaded (who may see it)
    job_id      TEXT,
    kind        TEXT NOT NULL CHECK (kind IN ('photo', 'signature')),
    media_type  TEXT NOT NULL,
    data        BLOB NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX driver_files_job ON driver_files (job_id);
