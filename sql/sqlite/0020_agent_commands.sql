-- Protocol revision 2 (docs/protocol.md §3 command, §10): a command answer's structured result,
-- and the set of commands each vehicle advertised in its latest hello.
ALTER TABLE commands ADD COLUMN result TEXT;   -- JSON object, NULL when the answer had none
CREATE TABLE vehicle_commands (
    vehicle_id  TEXT PRIMARY KEY,
    names       TEXT NOT NULL,                 -- JSON array of command names
    time_ms     INTEGER NOT NULL               -- when the hello that said so arrived
);
