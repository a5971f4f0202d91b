-- Protocol revision 2 (docs/protocol.md §3 command, §10): a command answer's structured result,
-- and the set of commands each vehicle advertised in its latest hello (mirrors sqlite/0020).
ALTER TABLE commands ADD COLUMN result jsonb;  -- NULL when the answer had none
CREATE TABLE vehicle_commands (
    vehicle_id  text PRIMARY KEY,
    names       jsonb NOT NULL,                -- array of command names
    time        timestamptz NOT NULL           -- when the hello that said so arrived
);
