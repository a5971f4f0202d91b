"""The in-cab tablet's records in the vehicle's SQLite file (agent/vehicle_db.py): paired
devices (token hashes), the actions recorded once each, the images kept on the vehicle.
Synchronous; the cab server runs them on the command runner's database thread."""

from __future__ import annotations

import sqlite3

# Tablets paired at once: a cab has one or two; a list longer than this is a leak.
MAX_DEVICES = 8
# Proof-of-delivery images kept on the vehicle until they can travel (docs/driver.md): a
# day's deliveries with a photo and a signature each, within a bounded share of the SD card.
MAX_FILES = 64
MAX_FILES_BYTES = 64 * 1024 * 1024
# Messages the tablet lists (both directions): the mailbox's week of dispatcher messages
# (agent/mailbox.py MAX_MESSAGES) and as many of the driver's own.
MAX_SHOWN_MESSAGES = 1000


class TooManyDevices(Exception):
    pass


def add_device(db: sqlite3.Connection, device_id: str, token_sha256: str, label: str,
               now_ms: int) -> None:
    with db:
        db.execute("BEGIN IMMEDIATE")
        (n,) = db.execute("SELECT count(*) FROM cab_devices").fetchone()
        if n >= MAX_DEVICES:
            raise TooManyDevices(f"{MAX_DEVICES} devices are paired: unpair one first")
        db.execute("INSERT INTO cab_devices (id, token_sha256, label, paired_ms) "
                   "VALUES (?, ?, ?, ?)", (device_id, token_sha256, label, now_ms))


def device_of(db: sqlite3.Connection, token_sha256: str) -> str | None:
    row = db.execute("SELECT id FROM cab_devices WHERE token_sha256=?",
                     (token_sha256,)).fetchone()
    return None if row is None else row[0]


def seen(db: sqlite3.Connection, device_id: str, now_ms: int) -> None:
    db.execute("UPDATE cab_devices SET seen_ms=? WHERE id=?", (now_ms, device_id))


def devices(db: sqlite3.Connection) -> list[dict]:
    return [{"id": r[0], "label": r[1], "paired_ms": r[2], "seen_ms": r[3]} for r in db.execute(
        "SELECT id, label, paired_ms, seen_ms FROM cab_devices ORDER BY paired_ms")]


def remove_devices(db: sqlite3.Connection, device_id: str | None) -> int:
    """Unpair one device (None: all); how many went."""
    if device_id is None:
        return db.execute("DELETE FROM cab_devices").rowcount
    return db.execute("DELETE FROM cab_devices WHERE id=?", (device_id,)).rowcount


def recorded_action(db: sqlite3.Connection, key: str, device_id: str,
                    device_seq: int) -> dict | None:
    """The action recorded under this key, or else under this device's sequence number."""
    row = db.execute("SELECT key, device_id, device_seq, digest, kind, job_id, q FROM "
                     "cab_actions WHERE key=? OR (device_id=? AND device_seq=?) "
                     "ORDER BY key=? DESC LIMIT 1", (key, device_id, device_seq, key)).fetchone()
    if row is None:
        return None
    return dict(zip(("key", "device_id", "device_seq", "digest", "kind", "job_id", "q"), row,
                    strict=True))


def record_action(db: sqlite3.Connection, row: dict, text: str | None = None) -> None:
    """Record a journaled action once; a message's `text` also joins the tablet's list (the
    driver sees what they sent, as the backend's driver API shows it)."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        new = db.execute(
            "INSERT INTO cab_actions (key, device_id, device_seq, digest, kind, job_id, q, "
            "received_ms) VALUES (:key, :device_id, :device_seq, :digest, :kind, :job_id, :q, "
            ":received_ms) ON CONFLICT DO NOTHING", row).rowcount > 0
        if new and row["kind"] == "message" and text is not None:
            show_message(db, f"out:{row['key']}", "from_driver", row["device_id"], text,
                         row["received_ms"])


def job_states(db: sqlite3.Connection) -> dict[str, str]:
    """Each stop's state as the driver's actions on this vehicle leave it (the latest wins)."""
    states = {"arrive": "arrived", "complete": "completed", "fail": "failed"}
    out: dict[str, str] = {}
    for kind, job in db.execute("SELECT kind, job_id FROM cab_actions WHERE job_id IS NOT NULL "
                                "ORDER BY received_ms, q"):
        if kind in states:
            out[job] = states[kind]
    return out


def has_file(db: sqlite3.Connection, file_id: str) -> bool:
    return db.execute("SELECT 1 FROM cab_files WHERE id=?", (file_id,)).fetchone() is not None


def keep_file(db: sqlite3.Connection, file_id: str, kind: str, job_id: str | None,
              body: bytes, now_ms: int) -> bool:
    """Keep an image (True if new); the oldest go beyond MAX_FILES / MAX_FILES_BYTES."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        if db.execute("SELECT 1 FROM cab_files WHERE id=?", (file_id,)).fetchone():
            return False
        db.execute("INSERT INTO cab_files (id, kind, job_id, body, received_ms) "
                   "VALUES (?, ?, ?, ?, ?)", (file_id, kind, job_id, body, now_ms))
        rows = db.execute("SELECT id, length(body) FROM cab_files "
                          "ORDER BY received_ms DESC, id").fetchall()
        total = 0
        for n, (fid, size) in enumerate(rows):
            total += size
            if n >= MAX_FILES or total > MAX_FILES_BYTES:
                db.execute("DELETE FROM cab_files WHERE id=?", (fid,))
    return True


def show_message(db: sqlite3.Connection, ref: str, direction: str, author: str, text: str,
                 now_ms: int) -> None:
    """Add a message to what the tablet lists (once per `ref`; the oldest go beyond
    MAX_SHOWN_MESSAGES). Inside the caller's transaction."""
    db.execute("INSERT INTO cab_messages (ref, direction, author, text, sent_ms) VALUES "
               "(?, ?, ?, ?, ?) ON CONFLICT (ref) DO NOTHING",
               (ref, direction, author, text, now_ms))
    db.execute("DELETE FROM cab_messages WHERE seq <= (SELECT seq FROM cab_messages "
               "ORDER BY seq DESC LIMIT 1 OFFSET ?)", (MAX_SHOWN_MESSAGES,))


def shown_messages(db: sqlite3.Connection, after: int) -> list[dict]:
    """The tablet's messages after the cursor `after`, as the driver API shows them."""
    return [{"seq": r[0], "direction": r[1], "author": r[2], "text": r[3], "sent_ms": r[4]}
            for r in db.execute("SELECT seq, direction, author, text, sent_ms FROM "
                                "cab_messages WHERE seq > ? ORDER BY seq", (after,))]


def last_shown(db: sqlite3.Connection) -> int:
    return db.execute("SELECT coalesce(max(seq), 0) FROM cab_messages").fetchone()[0]
