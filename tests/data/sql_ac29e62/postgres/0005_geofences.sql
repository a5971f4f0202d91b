-- Geofences edited over HTTP: MultiPolygons, circles, speed limits. Newest CAN value per signal
-- and the agent's last reported status, for GET /api/vehicles (mirrors sqlite/0006).
ALTER TABLE geofences ALTER COLUMN area TYPE geometry(Geometry, 4326);
ALTER TABLE geofences ADD CONSTRAINT geofences_area_polygonal
    CHECK (GeometryType(area) IN ('POLYGON', 'MULTIPOLYGON'));
ALTER TABLE geofences ADD COLUMN speed_limit_kmh real;
-- {"center": [lon, lat], "radius_m": r} for a circle; `area` then holds its polygon
ALTER TABLE geofences ADD COLUMN circle jsonb;
ALTER TABLE geofences ADD COLUMN updated_at timestamptz;

-- Newest value of each CAN signal by device time; backfill never moves it backwards.
CREATE TABLE last_signal (
    vehicle_id  text NOT NULL,
    signal      text NOT NULL,
    value       jsonb NOT NULL,
    time        timestamptz NOT NULL,
    PRIMARY KEY (vehicle_id, signal)
);
INSERT INTO last_signal (vehicle_id, signal, value, time)
    SELECT DISTINCT ON (t.vehicle_id, j.key) t.vehicle_id, j.key, j.value, t.time
    FROM vehicle_telemetry t, jsonb_each(t.signals) j
    WHERE t.kind = 'can' AND j.key <> 'bus'
    ORDER BY t.vehicle_id, j.key, t.time DESC;

-- The agent's last status report (journal backlog, link...), as sent.
CREATE TABLE vehicle_status (
    vehicle_id  text PRIMARY KEY,
    time        timestamptz NOT NULL,
    status      jsonb NOT NULL
);
