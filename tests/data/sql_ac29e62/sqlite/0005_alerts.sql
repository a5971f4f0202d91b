-- Alerts as episodes (docs/alerts.md). Replaces the unused alerts table of 0002: its rows, if
-- any, are kept as closed alerts. One row per (rule, vehicle, subject, start): the rules'
-- idempotent key, so re-evaluation (backfill, re-delivery, restart) updates instead of adding.
CREATE TABLE alerts_new (
    id              INTEGER PRIMARY KEY,
    rule            TEXT NOT NULL,
    vehicle_id      TEXT NOT NULL,
    subject         TEXT NOT NULL DEFAULT '',   -- geofence id, DTC code, … ('' if none)
    start_ms        INTEGER NOT NULL,           -- device time
    end_ms          INTEGER,                    -- NULL while open
    peak            REAL,
    state           TEXT NOT NULL CHECK (state IN ('open', 'closed', 'retracted')),
    lat             REAL,
    lon             REAL,
    detail          TEXT NOT NULL DEFAULT '{}', -- JSON object
    decided_ms      INTEGER NOT NULL,           -- device time of the reading that decided it
    acknowledged_by TEXT,
    acknowledged_ms INTEGER,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    UNIQUE (rule, vehicle_id, subject, start_ms)
);
INSERT INTO alerts_new (id, rule, vehicle_id, subject, start_ms, end_ms, state, detail,
                        decided_ms, created_ms, updated_ms)
    SELECT id, kind, vehicle_id, coalesce(geofence_id, ''), time_ms, time_ms, 'closed',
           coalesce(details, '{}'), time_ms, created_ms, created_ms FROM alerts WHERE true
    ON CONFLICT DO NOTHING;
DROP TABLE alerts;
ALTER TABLE alerts_new RENAME TO alerts;
CREATE INDEX alerts_vehicle_start ON alerts (vehicle_id, start_ms DESC);
CREATE INDEX alerts_start ON alerts (start_ms DESC);
CREATE INDEX alerts_open ON alerts (vehicle_id) WHERE state = 'open';

-- The rule evaluator's state per vehicle at a device time: re-evaluation after a backfill
-- starts from the newest checkpoint before the earliest new reading.
CREATE TABLE alert_checkpoints (
    vehicle_id  TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,           -- the state covers every reading up to this time
    state       TEXT NOT NULL,              -- JSON
    PRIMARY KEY (vehicle_id, time_ms)
) WITHOUT ROWID;
