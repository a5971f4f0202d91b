-- Alerts as episodes (docs/alerts.md). Replaces the unused alerts table of 0001: its rows, if
-- any, are kept as closed alerts. One row per (rule, vehicle, subject, start): the rules'
-- idempotent key, so re-evaluation (backfill, re-delivery, restart) updates instead of adding.
CREATE TABLE alerts_new (
    id              bigserial PRIMARY KEY,
    rule            text NOT NULL,
    vehicle_id      text NOT NULL,
    subject         text NOT NULL DEFAULT '',   -- geofence id, DTC code, … ('' if none)
    start_time      timestamptz NOT NULL,       -- device time
    end_time        timestamptz,                -- NULL while open
    peak            double precision,
    state           text NOT NULL CHECK (state IN ('open', 'closed', 'retracted')),
    lat             double precision,
    lon             double precision,
    detail          jsonb NOT NULL DEFAULT '{}',
    decided_time    timestamptz NOT NULL,       -- device time of the reading that decided it
    acknowledged_by text,
    acknowledged_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alerts_key UNIQUE (rule, vehicle_id, subject, start_time)
);
INSERT INTO alerts_new (id, rule, vehicle_id, subject, start_time, end_time, state, detail,
                        decided_time, created_at, updated_at)
    SELECT id, kind, vehicle_id, coalesce(geofence_id, ''), time, time, 'closed',
           coalesce(details, '{}'), time, created_at, created_at FROM alerts
    ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('alerts_new', 'id'), coalesce(max(id), 0) + 1, false)
    FROM alerts_new;
DROP TABLE alerts;
ALTER TABLE alerts_new RENAME TO alerts;
CREATE INDEX alerts_vehicle_start ON alerts (vehicle_id, start_time DESC);
CREATE INDEX alerts_start ON alerts (start_time DESC);
CREATE INDEX alerts_open ON alerts (vehicle_id) WHERE state = 'open';

-- The rule evaluator's state per vehicle at a device time: re-evaluation after a backfill
-- starts from the newest checkpoint before the earliest new reading. Exact epoch ms (bigint):
-- the key is compared with readings' device times to the millisecond.
CREATE TABLE alert_checkpoints (
    vehicle_id  text NOT NULL,
    time_ms     bigint NOT NULL,            -- the state covers every reading up to this time
    state       jsonb NOT NULL,
    PRIMARY KEY (vehicle_id, time_ms)
);
