-- Concern: the edges to customers and other systems (docs/customers.md). Tracking links (only
-- the token's SHA-256 is kept), the sources allowed to send signed webhooks, and the
-- idempotency keys of inbound requests (a repeated request is answered from here).
CREATE TABLE tracking_links (
    id          text PRIMARY KEY,           -- the dispatchers' handle (lnk_…), not the token
    token_hash  text NOT NULL UNIQUE,       -- hex SHA-256 of the token in the customer's URL
    job_id      text NOT NULL,
    created_ms  bigint NOT NULL,
    created_by  text NOT NULL,
    grace_s     integer NOT NULL,           -- answers this long after the job is done
    expires_ms  bigint,                    -- or until this date, whichever is first
    revoked_ms  bigint
);
CREATE INDEX tracking_links_job ON tracking_links (job_id);
CREATE TABLE inbound_sources (
    id          text PRIMARY KEY,           -- the name in the webhook's URL
    secret      text NOT NULL,              -- the HMAC key (needed to verify; shown once)
    created_ms  bigint NOT NULL,
    created_by  text NOT NULL
);
CREATE TABLE inbound_requests (
    source        text NOT NULL,            -- "user:<name>" (REST) or "source:<id>" (webhook)
    key           text NOT NULL,            -- the Idempotency-Key header or the event id
    request_hash  text NOT NULL,            -- SHA-256 of what was asked (method, path, body)
    status        integer NOT NULL,         -- 0 while being done, then the HTTP status
    response      text NOT NULL,            -- the JSON answered, replayed to a repeat
    created_ms    bigint NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX inbound_requests_age ON inbound_requests (created_ms);
