-- Geofences and alerts (mirrors sql/postgres/0001_init.sql). Polygons as GeoJSON text.
CREATE TABLE geofences (
    geofence_id TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    area        TEXT NOT NULL,          -- GeoJSON Polygon, lon/lat WGS84
    created_ms  INTEGER NOT NULL
);

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    vehicle_id  TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    geofence_id TEXT,
    details     TEXT,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX alerts_vehicle_time ON alerts (vehicle_id, time_ms DESC);
