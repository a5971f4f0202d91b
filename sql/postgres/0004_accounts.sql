-- Accounts and access (docs/operations.md "Users"): users, API tokens, sessions, vehicle
-- groups, audit. Mirrors sql/sqlite/0004_accounts.sql.
CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('viewer', 'dispatcher', 'admin')),
    password_hash text NOT NULL,               -- Argon2id PHC string, never the password
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz                  -- NULL while the account may log in
);

-- per-user API tokens for scripts: sha256 hex of a 256-bit random token
CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label       text NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- browser sessions: sha256 hex of the cookie's random value; expiry in backend/auth/sessions.py
CREATE TABLE sessions (
    id_hash     text PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_ms  bigint NOT NULL,
    seen_ms     bigint NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- vehicle groups: a user in groups sees only their vehicles (backend/authz.py)
CREATE TABLE groups (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE group_vehicles (
    group_name  text NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    vehicle_id  text NOT NULL,
    PRIMARY KEY (group_name, vehicle_id)
);
CREATE TABLE group_members (
    group_name  text NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_id)
);

-- who did what, when (commands sent, geofences edited, alerts acknowledged, accounts changed)
CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    time        timestamptz NOT NULL,
    user_name   text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    detail      jsonb
);
CREATE INDEX audit_time ON audit (time);
