-- The agent's latest status report (protocol.md §3 status): one row per vehicle, replaced by
-- each new report. IF NOT EXISTS: the REST API's migration defines the same table.
CREATE TABLE IF NOT EXISTS vehicle_status (
    vehicle_id  TEXT PRIMARY KEY,
    time_ms     INTEGER NOT NULL,       -- when the gateway received it
    status      TEXT NOT NULL           -- JSON object, as sent
);
