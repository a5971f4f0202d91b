-- Readings land first in arrival order, then move into the table clustered by vehicle
-- (docs/persistence.md "The embedded store's readings"; docs/benchmarks.md "The SQLite store
-- path, session 12"). At 10,000 vehicles a commit of 200 readings rewrote ~200 leaves of the
-- clustered table (one per vehicle, ~3 WAL pages per reading with splits and checkpoints);
-- appended to `telemetry_arrivals` it writes the tail of each of its 16 parts, and every
-- ~10 s a part's readings move into the clustered table in one statement, several readings
-- per vehicle leaf.
--
-- `part` is a function of the vehicle (the expression below, also in
-- backend/store/sqlite/readings.py `PART`): a vehicle's readings move together. The key
-- starts with (part, time): live readings append at the end of their part; a question about
-- one vehicle and a span of time seeks its part and span (SQLite propagates `vehicle_id = ?`
-- into the view's `part = <expression>`). A re-sent reading conflicts with its own row here;
-- one already moved is hidden by the view (the NOT EXISTS, a seek of the key, paid by the
-- readers of the last seconds instead of by every insert) and dropped by its move, so it
-- stays a no-op; a move is one transaction (insert, delete), so a crash between loses and
-- duplicates nothing.
ALTER TABLE vehicle_telemetry RENAME TO telemetry_by_vehicle;
CREATE TABLE telemetry_arrivals (
    part        INTEGER NOT NULL,       -- which of the 16 moves takes it (by vehicle)
    vehicle_id  TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    lat         REAL,
    lon         REAL,
    alt_m       REAL,
    speed_kmh   REAL,
    course_deg  REAL,
    fix         INTEGER,
    sats        INTEGER,
    hdop        REAL,
    data        TEXT,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (part, time_ms, vehicle_id, epoch, seq)
) WITHOUT ROWID;
-- every reader of readings reads this view: the moved readings and those not moved yet
CREATE VIEW vehicle_telemetry AS
    SELECT vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh, course_deg, fix,
        sats, hdop, data, received_ms
    FROM telemetry_by_vehicle
    UNION ALL
    SELECT vehicle_id, epoch, seq, time_ms, kind, lat, lon, alt_m, speed_kmh, course_deg, fix,
        sats, hdop, data, received_ms
    FROM telemetry_arrivals a
    WHERE part = (coalesce(unicode(substr(vehicle_id, -1)), 0) * 7
                  + coalesce(unicode(substr(vehicle_id, -2, 1)), 0) * 3) % 16
      AND NOT EXISTS (SELECT 1 FROM telemetry_by_vehicle t WHERE t.vehicle_id = a.vehicle_id
                      AND t.time_ms = a.time_ms AND t.epoch = a.epoch AND t.seq = a.seq);
