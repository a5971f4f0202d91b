-- Concern: notifications (docs/notifications.md). Subscriptions, the outbox every delivery
-- goes through (a restart or kill -9 loses none: a row is delivered, retried or given up),
-- the delivery log, the cursors over job_transitions and alerts, and the cluster's leases.
CREATE TABLE notify_subscriptions (
    id          bigserial PRIMARY KEY,
    owner       text NOT NULL,              -- the user who made it
    group_name  text,                       -- an admin's subscription for a group; NULL: own
    body        text NOT NULL,              -- JSON (backend/notify/subscriptions.py)
    secret      text NOT NULL DEFAULT '',   -- a webhook's signing key
    created_ms  bigint NOT NULL
);
CREATE INDEX notify_subscriptions_owner ON notify_subscriptions (owner);

-- One row per (subscription, event): the unique key makes enqueueing idempotent, the stable
-- event id is what receivers deduplicate by.
CREATE TABLE notify_outbox (
    id              bigserial PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES notify_subscriptions (id) ON DELETE CASCADE,
    event_id        text NOT NULL,
    event           text NOT NULL,          -- JSON, as sent
    state           text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        bigint NOT NULL DEFAULT 0,
    next_ms         bigint NOT NULL,       -- due at (quiet hours and digests move it)
    created_ms      bigint NOT NULL,
    done_ms         bigint,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX notify_outbox_due ON notify_outbox (next_ms) WHERE state = 'pending';

-- The delivery log: every attempt, its outcome and the receiver's answer (shortened).
CREATE TABLE notify_attempts (
    id              bigserial PRIMARY KEY,
    outbox_id       bigint NOT NULL REFERENCES notify_outbox (id) ON DELETE CASCADE,
    subscription_id bigint NOT NULL,
    at_ms           bigint NOT NULL,
    ok              boolean NOT NULL,
    detail          text NOT NULL DEFAULT ''
);
CREATE INDEX notify_attempts_subscription ON notify_attempts (subscription_id, id);

-- How far each event source has been read (job_transitions.seq, alerts.id).
CREATE TABLE notify_cursors (
    name        text PRIMARY KEY,
    position    bigint NOT NULL
);

-- Work that runs once per cluster (deliveries, digests, schedules): who holds it until when.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    expires_ms  bigint NOT NULL
);
