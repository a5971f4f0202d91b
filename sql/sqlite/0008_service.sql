-- Vehicle service records (docs/maintenance.md): services done, per vehicle and interval.
CREATE TABLE maintenance_services (
    id           INTEGER PRIMARY KEY,
    vehicle_id   TEXT NOT NULL,
    interval     TEXT NOT NULL,          -- a [[maintenance.interval]] name
    done_ms      INTEGER NOT NULL,
    odometer_km  REAL,                   -- the CAN odometer then, when known
    engine_h     REAL,                   -- the engine-hours counter then, when known
    note         TEXT NOT NULL DEFAULT '',
    recorded_by  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX maintenance_services_vehicle ON maintenance_services (vehicle_id, interval, done_ms);
