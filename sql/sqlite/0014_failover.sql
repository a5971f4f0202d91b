-- Concern: the database behind a pooler and a failover (docs/operations.md). PgBouncer's
-- role setting (sql/postgres/0014_failover.sql) has nothing to do in SQLite.

-- A command may carry its sender's idempotency key (HTTP `Idempotency-Key`): a request
-- repeated after a timeout or a database failover finds the command the first one stored
-- instead of queueing it twice. Unique per vehicle; commands without a key are unaffected.
ALTER TABLE commands ADD COLUMN request_key text;
CREATE UNIQUE INDEX commands_request_key ON commands (vehicle_id, request_key)
    WHERE request_key IS NOT NULL;
