-- Concern: vehicle actions the backend could not apply (docs/operations.md "Dead letters of
-- vehicle actions"). One row per `act` reading (vehicle, epoch, seq) that failed: `failing`
-- while the gateway still asks the agent to send it again (`failures` counts identical
-- failures in a row, kept here so a restart does not reset it), `dead` once it was set aside
-- (acknowledged, the journal moves on; replayable), `replayed` once a replay applied it,
-- `refused` for an image the backend cannot take (never replayable: the device must send it
-- again).
CREATE TABLE action_letters (
    vehicle_id  TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    key         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    action      TEXT NOT NULL,
    taken_ms    INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('failing', 'dead', 'replayed', 'refused')),
    error       TEXT NOT NULL,
    failures    INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    replayed_ms INTEGER,
    outcome     TEXT,
    PRIMARY KEY (vehicle_id, epoch, seq)
);
CREATE INDEX action_letters_state ON action_letters (state, last_ms);
