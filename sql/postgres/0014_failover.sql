-- Concern: the database behind a pooler and a failover (docs/operations.md).

-- Behind a transaction-pooling PgBouncer the backend cannot send `jit = off` as a startup
-- parameter (PgBouncer 1.18 refuses parameters it does not track) nor SET it per session (the
-- next transaction may run on another server connection). The role's own default holds on
-- every connection, pooled or direct: PostGIS cost estimates would otherwise trigger JIT
-- compilation that costs more than the index-driven queries themselves. Any role may set its
-- own defaults; it applies to the role's new connections in every database of the cluster.
ALTER ROLE CURRENT_USER SET jit = off;

-- A command may carry its sender's idempotency key (HTTP `Idempotency-Key`): a request
-- repeated after a timeout or a database failover finds the command the first one stored
-- instead of queueing it twice. Unique per vehicle; commands without a key are unaffected.
ALTER TABLE commands ADD COLUMN request_key text;
CREATE UNIQUE INDEX commands_request_key ON commands (vehicle_id, request_key)
    WHERE request_key IS NOT NULL;
