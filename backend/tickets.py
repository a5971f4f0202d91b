"""The gateway's TLS session tickets, kept in a small SQLite file of its own (docs/protocol.md §8).

A ticket outlives a gateway restart (graceful or kill -9), so an agent that reconnects afterwards
resumes with its hello in 0-RTT instead of paying a full handshake. Each ticket is good once:
`pop` deletes it in the statement that reads it. The QUIC library calls `add` and `pop`
synchronously on the event loop; each is one short local transaction (~40 µs measured,
docs/link.md).

The file holds resumption secrets: it is created mode 0600 and kept apart from the readings
store. Losing it only costs every agent one full handshake, so an unreadable file is replaced.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sqlite3

from geostream.clock import wall_ms
from geostream.secretfile import create_private
from geostream.tickets import ticket_from_json, ticket_to_json, utc

log = logging.getLogger(__name__)

# Tickets kept: the most recently issued, ~1 KB each on disk (~50 MB at the limit). The QUIC
# library issues one per connection, valid for a day: this covers many thousand vehicles.
MAX_TICKETS = 50_000
# A second process holding the file (misconfiguration) must not stall the event loop for long;
# after this a ticket is simply not stored or not found (a full handshake, never an error).
BUSY_TIMEOUT_MS = 50
SCHEMA_VERSION = 1
_SCHEMA = """CREATE TABLE session_tickets (
    id                 INTEGER PRIMARY KEY,   -- issue order: the oldest go beyond MAX_TICKETS
    label              BLOB NOT NULL UNIQUE,  -- what the client presents (the ticket bytes)
    not_valid_after_ms INTEGER NOT NULL,
    ticket             TEXT NOT NULL          -- geostream.tickets.ticket_to_json
);
CREATE INDEX session_tickets_expiry ON session_tickets (not_valid_after_ms);"""
_SIDECARS = ("", "-wal", "-shm", "-journal")


def _ms(t: datetime.datetime) -> int:
    """A ticket time (aware, or naive UTC as qh3 keeps it) in epoch milliseconds."""
    return int(utc(t).timestamp() * 1000)


class TicketStore:
    """Session tickets by label in `path` (":memory:" for a throw-away store), each usable once,
    expired ones pruned, at most `limit` kept."""

    def __init__(self, path: str, limit: int = MAX_TICKETS, lib=None):
        """`lib`: the QUIC library whose `SessionTicket` `pop` returns (geostream/quic/)."""
        self.path = path
        self.lib = lib
        self.limit = limit
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            log.warning("session ticket file %s unusable (%s): starting a new one", path, exc)
            for suffix in _SIDECARS:
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            _create_private(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives a crash of the process (kill -9); a power cut of the
            # backend host may lose the last tickets (one full handshake) or undo the last uses
            # (a replayed 0-RTT hello is harmless, §8). FULL would fsync on every connection.
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DROP TABLE IF EXISTS session_tickets")
                for statement in _SCHEMA.split(";"):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
            db.execute("SELECT count(*) FROM session_tickets").fetchone()
        except BaseException:
            db.close()
            raise
        if self.path != ":memory:":
            for suffix in _SIDECARS:  # SQLite copies the mode, but tighten leftovers too
                if os.path.exists(self.path + suffix):
                    os.chmod(self.path + suffix, 0o600)
        return db

    def add(self, ticket) -> None:
        """the QUIC library's session_ticket_handler: keep a ticket the gateway is about to send."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO session_tickets (label, not_valid_after_ms, ticket) "
                    "VALUES (?, ?, ?)", (ticket.ticket, _ms(ticket.not_valid_after),
                                         json.dumps(ticket_to_json(ticket))))
                self._db.execute(
                    "DELETE FROM session_tickets WHERE id <= last_insert_rowid() - ? "
                    "OR not_valid_after_ms <= ?", (self.limit, wall_ms()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            log.warning("cannot store session ticket: %s", exc)

    def pop(self, label: bytes):
        """the QUIC library's session_ticket_fetcher: the ticket for `label`, deleted in the same
        statement, or None (unknown, used, expired or unreadable: a full handshake)."""
        try:
            rows = self._db.execute(
                "DELETE FROM session_tickets WHERE label = ? "
                "RETURNING not_valid_after_ms, ticket", (label,)).fetchall()
            if not rows or rows[0][0] <= wall_ms():
                return None
            return ticket_from_json(json.loads(rows[0][1]), self.lib)
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot use session ticket: %s", exc)
            return None

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM session_tickets").fetchone()[0]

    def close(self) -> None:
        self._db.close()



def _create_private(path: str) -> None:
    """Create `path` (and missing parent directories, 0700) readable by the owner only."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    create_private(path)
    os.chmod(path, 0o600)  # an existing file from an older release: tightened, still empty
