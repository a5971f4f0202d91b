-- Downlink commands (protocol.md §3): kept until the vehicle answers, so a restart loses none.
CREATE TABLE commands (
    id           bigint PRIMARY KEY,    -- sent to the agent; never reused (base.command_id_floor)
    vehicle_id   text NOT NULL,
    name         text NOT NULL,
    args         jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    sent_count   integer NOT NULL DEFAULT 0,
    last_sent_at timestamptz,
    answered_at  timestamptz,           -- NULL while pending
    ok           boolean,
    detail       text
);
CREATE INDEX commands_pending ON commands (vehicle_id, id) WHERE answered_at IS NULL;
