-- Downlink commands (protocol.md §3): kept until the vehicle answers, so a restart loses none.
CREATE TABLE commands (
    id           INTEGER PRIMARY KEY,   -- sent to the agent; never reused (base.command_id_floor)
    vehicle_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    args         TEXT NOT NULL,         -- JSON object
    created_ms   INTEGER NOT NULL,
    sent_count   INTEGER NOT NULL DEFAULT 0,
    last_sent_ms INTEGER,
    answered_ms  INTEGER,               -- NULL while pending
    ok           INTEGER,               -- 0/1 once answered
    detail       TEXT
);
CREATE INDEX commands_pending ON commands (vehicle_id, id) WHERE answered_ms IS NULL;
