-- The readings clustered by (vehicle, device time, epoch, seq): every question asked of them is
-- one vehicle over a span of device time, which the key itself now answers, so each stored
-- reading updates one B-tree instead of two (the table keyed by (vehicle, epoch, seq) and its
-- (vehicle, time) index: two 4 KB pages per reading in the WAL at 10,000 vehicles, one now;
-- docs/benchmarks.md "The SQLite store path, session 11"). A re-sent reading is still a no-op:
-- it is the same journal row, so it carries the same time (PostgreSQL's unique key holds the
-- time too: (vehicle_id, epoch, seq, time)). Rows carried over in key order.
CREATE TABLE vehicle_telemetry_by_time (
    vehicle_id  TEXT NOT NULL,
    epoch       INTEGER NOT NULL,       -- the agent journal's epoch (protocol.md §5)
    seq         INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,       -- device time
    kind        TEXT NOT NULL,          -- pos | can | evt
    lat         REAL,
    lon         REAL,
    alt_m       REAL,
    speed_kmh   REAL,
    course_deg  REAL,
    fix         INTEGER,
    sats        INTEGER,
    hdop        REAL,
    data        TEXT,                   -- JSON: CAN signals or event data
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (vehicle_id, time_ms, epoch, seq)
) WITHOUT ROWID;
INSERT INTO vehicle_telemetry_by_time (vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m,
        speed_kmh, course_deg, fix, sats, hdop, data, received_ms)
    SELECT vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh, course_deg, fix,
        sats, hdop, data, received_ms
    FROM vehicle_telemetry ORDER BY vehicle_id, time_ms, epoch, seq;
DROP TABLE vehicle_telemetry;
ALTER TABLE vehicle_telemetry_by_time RENAME TO vehicle_telemetry;
