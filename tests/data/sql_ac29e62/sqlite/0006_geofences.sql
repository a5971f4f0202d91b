-- Geofences edited over HTTP: MultiPolygons, circles, speed limits. Newest CAN value per signal
-- and the agent's last reported status, for GET /api/vehicles (mirrors postgres/0005).
ALTER TABLE geofences ADD COLUMN speed_limit_kmh REAL;
-- JSON {"center": [lon, lat], "radius_m": r} for a circle; `area` then holds its polygon
ALTER TABLE geofences ADD COLUMN circle TEXT;
ALTER TABLE geofences ADD COLUMN updated_ms INTEGER;

-- newest value of each CAN signal by device time; backfill never moves it backwards
CREATE TABLE last_signal (
    vehicle_id  TEXT NOT NULL,
    signal      TEXT NOT NULL,
    value       TEXT NOT NULL,          -- JSON
    time_ms     INTEGER NOT NULL,
    PRIMARY KEY (vehicle_id, signal)
) WITHOUT ROWID;
INSERT INTO last_signal (vehicle_id, signal, value, time_ms)
    SELECT t.vehicle_id, j.key, json_quote(j.value), max(t.time_ms)
    FROM vehicle_telemetry t, json_each(t.data) j
    WHERE t.kind = 'can' AND j.key <> 'bus'
    GROUP BY t.vehicle_id, j.key;

-- the agent's last status report (journal backlog, link...), as sent
CREATE TABLE vehicle_status (
    vehicle_id  TEXT PRIMARY KEY,
    time_ms     INTEGER NOT NULL,
    status      TEXT NOT NULL           -- JSON object
);
