-- Concern: the edges to customers and other systems (docs/customers.md). Tracking links (only
-- the token's SHA-256 is kept), the sources allowed to send signed webhooks, and the
-- idempotency keys of inbound requests (a repeated request is answered from here).
CREATE TABLE tracking_links (
    id          TEXT PRIMARY KEY,           -- the dispatchers' handle (lnk_…), not the token
    token_hash  TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the token in the customer's URL
    job_id      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    grace_s     INTEGER NOT NULL,           -- answers this long after the job is done
    expires_ms  INTEGER,                    -- or until this date, whichever is first
    revoked_ms  INTEGER
);
CREATE INDEX tracking_links_job ON tracking_links (job_id);
CREATE TABLE inbound_sources (
    id          TEXT PRIMARY KEY,           -- the name in the webhook's URL
    secret      TEXT NOT NULL,              -- the HMAC key (needed to verify; shown once)
    created_ms  INTEGER NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE TABLE inbound_requests (
    source        TEXT NOT NULL,            -- "user:<name>" (REST) or "source:<id>" (webhook)
    key           TEXT NOT NULL,            -- the Idempotency-Key header or the event id
    request_hash  TEXT NOT NULL,            -- SHA-256 of what was asked (method, path, body)
    status        INTEGER NOT NULL,         -- 0 while being done, then the HTTP status
    response      TEXT NOT NULL,            -- the JSON answered, replayed to a repeat
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX inbound_requests_age ON inbound_requests (created_ms);
