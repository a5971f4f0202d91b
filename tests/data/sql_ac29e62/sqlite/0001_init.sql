-- Embedded store schema (SQLite). Mirrors sql/postgres/ where SQLite allows.
CREATE TABLE vehicles (
    vehicle_id  TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL,          -- sha256 hex of the vehicle's random token
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER                 -- NULL while the credential is valid
);

CREATE TABLE vehicle_telemetry (
    vehicle_id  TEXT NOT NULL,
    epoch       INTEGER NOT NULL,       -- the agent journal's epoch (protocol.md §5)
    seq         INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,       -- device time
    kind        TEXT NOT NULL,          -- pos | can | evt
    lat         REAL,
    lon         REAL,
    alt         REAL,
    speed_kmh   REAL,
    course      REAL,
    fix         INTEGER,
    sats        INTEGER,
    hdop        REAL,
    data        TEXT,                   -- JSON: CAN signals or event data
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (vehicle_id, epoch, seq)   -- a re-sent reading is a no-op
) WITHOUT ROWID;
CREATE INDEX vehicle_telemetry_vehicle_time ON vehicle_telemetry (vehicle_id, time_ms DESC);

-- newest position per vehicle by device time; backfill never moves it backwards
CREATE TABLE last_position (
    vehicle_id  TEXT PRIMARY KEY,
    time_ms     INTEGER NOT NULL,
    lat         REAL NOT NULL,
    lon         REAL NOT NULL,
    speed_kmh   REAL,
    course      REAL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL
);

CREATE TABLE dead_letter (
    id          INTEGER PRIMARY KEY,
    vehicle_id  TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    reading     TEXT NOT NULL,          -- the reading as JSON
    error       TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    UNIQUE (vehicle_id, epoch, seq)
);
