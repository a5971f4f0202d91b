-- Accounts and access (docs/operations.md "Users"): users, API tokens, sessions, vehicle
-- groups, audit. Mirrors sql/postgres/0003_accounts.sql.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'dispatcher', 'admin')),
    password_hash TEXT NOT NULL,        -- Argon2id PHC string, never the password
    created_ms    INTEGER NOT NULL,
    disabled_ms   INTEGER               -- NULL while the account may log in
);

-- per-user API tokens for scripts: sha256 hex of a 256-bit random token
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL
);

-- browser sessions: sha256 hex of the cookie's random value; expiry in backend/auth/sessions.py
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_ms  INTEGER NOT NULL,
    seen_ms     INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- vehicle groups: a user in groups sees only their vehicles (backend/authz.py)
CREATE TABLE groups (
    name        TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE group_vehicles (
    group_name  TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    vehicle_id  TEXT NOT NULL,
    PRIMARY KEY (group_name, vehicle_id)
);
CREATE TABLE group_members (
    group_name  TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_id)
);

-- who did what, when (commands sent, geofences edited, alerts acknowledged, accounts changed)
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    time_ms     INTEGER NOT NULL,
    user_name   TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT                    -- JSON
);
CREATE INDEX audit_time ON audit (time_ms);
