"""The vehicle's own records beside the readings, in the journal's SQLite file: the command
record (agent/command_log.py), the configuration rollback record (agent/rollback.py), the
driver's mailbox (agent/mailbox.py) and the in-cab tablet's records (agent/cab/records.py).
docs/protocol.md §3 command says why they are durable.

One connection of its own to the journal file (WAL: the journal's writer and this one take
turns; commands are rare, so the wait is short), `synchronous=FULL` like the journal, so a
record that committed survives kill -9 and power cuts. Opened after the journal, so the
journal creates the file (auto_vacuum must precede the first table).
"""

from __future__ import annotations

import sqlite3

# A command waits this long for the journal's group commit to finish writing: one commit of
# 2,000 readings on an SD card takes well under a second.
BUSY_TIMEOUT_MS = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS command_log (
    id INTEGER PRIMARY KEY,       -- the gateway's command id (never reused)
    name TEXT NOT NULL,
    args TEXT NOT NULL,           -- JSON
    begun_ms INTEGER NOT NULL,    -- committed before the command acts
    answered_ms INTEGER,          -- NULL: begun, not answered (running, or the agent died)
    ok INTEGER,
    detail TEXT,
    result TEXT                   -- JSON or NULL
);
CREATE TABLE IF NOT EXISTS agent_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailbox_routes (
    route_id TEXT PRIMARY KEY,    -- the dispatch route's id
    version INTEGER NOT NULL,
    body TEXT NOT NULL,           -- JSON: the route as route.set carried it
    received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mailbox_messages (
    message_id INTEGER PRIMARY KEY,
    text TEXT NOT NULL,
    sender TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    read_ms INTEGER
);
CREATE TABLE IF NOT EXISTS cab_devices (   -- tablets paired with the cab (agent/cab/)
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,  -- only the token's hash is kept
    label TEXT NOT NULL,
    paired_ms INTEGER NOT NULL,
    seen_ms INTEGER
);
CREATE TABLE IF NOT EXISTS cab_actions (   -- the tablet's actions, recorded once each
    key TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_seq INTEGER NOT NULL,
    digest TEXT NOT NULL,         -- SHA-256 of the body the app sent
    kind TEXT NOT NULL,
    job_id TEXT,
    q INTEGER NOT NULL,           -- the journal's sequence number of its act reading
    received_ms INTEGER NOT NULL,
    UNIQUE (device_id, device_seq)
);
CREATE TABLE IF NOT EXISTS cab_messages (  -- what the tablet shows, in the order taken
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the app's cursor: never reused, always rising
    ref TEXT NOT NULL UNIQUE,     -- "in:" + the mailbox's message_id, "out:" + an action key
    direction TEXT NOT NULL,      -- to_driver (dispatch's) or from_driver (the driver's own)
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_ms INTEGER NOT NULL
);
-- a vehicle from before cab_messages: the tablet shows the mailbox's messages as before
INSERT INTO cab_messages (ref, direction, author, text, sent_ms)
    SELECT 'in:' || message_id, 'to_driver', sender, text, received_ms FROM mailbox_messages
    WHERE NOT EXISTS (SELECT 1 FROM cab_messages) ORDER BY message_id;
CREATE TABLE IF NOT EXISTS cab_files (     -- proof-of-delivery images kept on the vehicle
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    job_id TEXT,
    body BLOB NOT NULL,
    received_ms INTEGER NOT NULL
);
"""


def open_vehicle_db(path: str) -> sqlite3.Connection:
    """Open the journal file's vehicle tables (creating them). Raises sqlite3.Error/OSError
    when the storage is unusable; the caller answers commands ok=false meanwhile."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db
