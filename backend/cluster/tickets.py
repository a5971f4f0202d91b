"""Session tickets shared by every gateway node through PostgreSQL (docs/scaling.md §6), so a
vehicle resumes with 0-RTT on whichever node the router picks.

The QUIC library calls `add` and `pop` synchronously on the event loop, so they work on an
in-memory copy; a sync task every `SYNC_S` writes this node's new tickets and uses to PostgreSQL
and reads the other nodes'. A ticket is good once per node at once and once across the cluster
after a sync; a 0-RTT hello replayed inside that window is harmless (docs/protocol.md §8).
Losing the table costs each vehicle one full handshake, never an error. The tables are this
module's own (created if missing), apart from the readings schema, as the SQLite ticket file is.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging

from geostream.clock import wall_ms
from geostream.tickets import ticket_from_json, ticket_to_json, utc

log = logging.getLogger(__name__)

# How stale another node's view may be: a vehicle reconnecting within this after its node died
# resumes on the next node; the router needs DEAD_AFTER_S (1.6 s) to notice the death anyway.
SYNC_S = 0.5
# Used labels and expired tickets older than a ticket's life (a day) are pruned every this
# many syncs (~1 min).
PRUNE_EVERY = 120
DAY_MS = 86_400_000
# The newest tickets kept in memory and in the table (~1 KB each), as backend/tickets.py.
MAX_TICKETS = 50_000
# Nodes starting together create the tables under this advisory lock: concurrent CREATE TABLE IF
# NOT EXISTS races in PostgreSQL (a unique violation on pg_type, seen in the namespace test).
_SCHEMA_LOCK = 0x666C656574544B  # "fleetTK"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS shared_session_tickets (
    id                 bigserial PRIMARY KEY,
    label              bytea NOT NULL UNIQUE,
    not_valid_after_ms bigint NOT NULL,
    ticket             text NOT NULL);
CREATE TABLE IF NOT EXISTS shared_session_ticket_uses (
    id    bigserial PRIMARY KEY,
    label bytea NOT NULL,
    used_ms bigint NOT NULL);"""


def _ms(t: datetime.datetime) -> int:
    """A ticket time (aware, or naive UTC as qh3 keeps it) in epoch milliseconds."""
    return int(utc(t).timestamp() * 1000)


class SharedTicketStore:
    """`add`/`pop` for the QUIC library `lib` (geostream/quic/), backed by PostgreSQL at `url`;
    `await start()` first."""

    def __init__(self, url: str, sync_s: float = SYNC_S, lib=None):
        self.lib = lib
        self.url = url
        self.sync_s = sync_s
        self._tickets: dict[bytes, object] = {}
        self._new: list = []
        self._used: list[bytes] = []
        self._last_ticket = self._last_use = 0
        self._syncs = 0
        self._db = None
        self._task: asyncio.Task | None = None
        # one sync at a time: the loop's and a caller's would share the one connection, which
        # asyncpg refuses ("another operation is in progress")
        self._syncing = asyncio.Lock()

    async def start(self) -> SharedTicketStore:
        import asyncpg

        self._db = await asyncpg.connect(self.url)
        async with self._db.transaction():
            await self._db.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await self._db.execute(_SCHEMA)
        self._last_use = await self._db.fetchval(
            "SELECT coalesce(max(id), 0) FROM shared_session_ticket_uses")
        await self.sync()
        self._task = asyncio.get_running_loop().create_task(self._sync_loop())
        return self

    def add(self, ticket) -> None:
        self._tickets[ticket.ticket] = ticket
        self._new.append(ticket)
        while len(self._tickets) > MAX_TICKETS:
            del self._tickets[next(iter(self._tickets))]

    def pop(self, label: bytes):
        ticket = self._tickets.pop(label, None)
        if ticket is None:
            return None
        self._used.append(label)
        return ticket if _ms(ticket.not_valid_after) > wall_ms() else None

    def __len__(self) -> int:
        return len(self._tickets)

    async def sync(self) -> None:
        """Write this node's news, then read the other nodes'; a sync called while another runs
        waits for it, then does its own."""
        async with self._syncing:
            await self._sync()

    async def _sync(self) -> None:
        new, used, now = self._new, self._used, wall_ms()
        self._syncs += 1
        if self._syncs % PRUNE_EVERY == 0:
            await self._db.execute("DELETE FROM shared_session_ticket_uses WHERE used_ms < $1",
                                   now - DAY_MS)
            await self._db.execute("DELETE FROM shared_session_tickets "
                                   "WHERE not_valid_after_ms < $1", now)
        self._new, self._used = [], []
        if new:
            await self._db.executemany(
                "INSERT INTO shared_session_tickets (label, not_valid_after_ms, ticket) "
                "VALUES ($1, $2, $3) ON CONFLICT (label) DO NOTHING",
                [(t.ticket, _ms(t.not_valid_after), json.dumps(ticket_to_json(t)))
                 for t in new])
        if used:
            await self._db.executemany(
                "INSERT INTO shared_session_ticket_uses (label, used_ms) VALUES ($1, $2)",
                [(label, now) for label in used])
            await self._db.execute("DELETE FROM shared_session_tickets WHERE label = any($1)",
                                   used)
        for row in await self._db.fetch(
                "SELECT id, label, ticket FROM shared_session_tickets WHERE id > $1 "
                "AND not_valid_after_ms > $2 ORDER BY id", self._last_ticket, now):
            self._last_ticket = row["id"]
            try:
                self._tickets.setdefault(bytes(row["label"]),
                                         ticket_from_json(json.loads(row["ticket"]), self.lib))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable shared session ticket: %s", exc)
        for row in await self._db.fetch(
                "SELECT id, label FROM shared_session_ticket_uses WHERE id > $1 ORDER BY id",
                self._last_use):
            self._last_use = row["id"]
            self._tickets.pop(bytes(row["label"]), None)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            try:
                await self.sync()
            except Exception as exc:  # the table is a cache: a failed sync costs handshakes
                log.warning("cannot sync shared session tickets: %s", exc)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._db is not None:
            self._db.terminate()
            self._db = None
