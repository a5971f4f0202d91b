-- Maintenance (docs/maintenance.md): services done, per vehicle and interval.
CREATE TABLE maintenance_services (
    id           bigserial PRIMARY KEY,
    vehicle_id   text NOT NULL,
    interval     text NOT NULL,          -- a [[maintenance.interval]] name
    done_time    timestamptz NOT NULL,
    odometer_km  double precision,       -- the CAN odometer then, when known
    engine_h     double precision,       -- the engine-hours counter then, when known
    note         text NOT NULL DEFAULT '',
    recorded_by  text NOT NULL DEFAULT ''
);
CREATE INDEX maintenance_services_vehicle
    ON maintenance_services (vehicle_id, interval, done_time);
