"""Dispatch proposals of the SQLite store (sql/sqlite/0022_dispatch_proposals.sql): plans
waiting for a dispatcher's approval, on the state version they were computed on."""

from __future__ import annotations

import json

from ...dispatch.storage import MAX_OPEN_PROPOSALS, StoredProposal
from .db import SqliteDb, transaction

_COLUMNS = "id, created_ms, based_on_version, status, cause, body, closed_ms, closed_by"


def _proposal(r) -> StoredProposal:
    return StoredProposal(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])


class SqliteProposals(SqliteDb):
    """Mixed into SqliteStore."""

    async def put_proposal(self, p: StoredProposal,
                           keep_open: int = MAX_OPEN_PROPOSALS) -> list[str]:
        """Keep a new open proposal; the oldest open ones beyond `keep_open` are dropped (their
        ids returned). The same id again changes nothing."""
        body = json.dumps(p.body, separators=(",", ":"), sort_keys=True)

        def run():
            with transaction(self._db) as db:
                db.execute(f"INSERT INTO dispatch_proposals ({_COLUMNS}) VALUES "
                           "(?, ?, ?, 'open', ?, ?, NULL, NULL) ON CONFLICT (id) DO NOTHING",
                           (p.id, p.created_ms, str(p.based_on_version), p.cause, body))
                old = [r[0] for r in db.execute(
                    "SELECT id FROM dispatch_proposals WHERE status = 'open' "
                    "ORDER BY created_ms DESC, id DESC LIMIT -1 OFFSET ?", (keep_open,))]
                db.executemany("UPDATE dispatch_proposals SET status = 'dropped', "
                               "closed_ms = ?, closed_by = 'newer proposals' WHERE id = ?",
                               [(p.created_ms, i) for i in old])
                return old

        return await self._run(run)

    async def proposal(self, proposal_id: str) -> StoredProposal | None:
        def row():
            r = self._db.execute(f"SELECT {_COLUMNS} FROM dispatch_proposals WHERE id = ?",
                                 (proposal_id,)).fetchone()
            return None if r is None else _proposal(r)

        return await self._run(row)

    async def proposals(self, status: str | None = None,
                        limit: int = MAX_OPEN_PROPOSALS) -> list[StoredProposal]:
        """Newest first."""
        def rows():
            where, args = ("WHERE status = ?", (status,)) if status else ("", ())
            return [_proposal(r) for r in self._db.execute(
                f"SELECT {_COLUMNS} FROM dispatch_proposals {where} "
                "ORDER BY created_ms DESC, id DESC LIMIT ?", (*args, limit))]

        return await self._run(rows)

    async def close_proposal(self, proposal_id: str, status: str, by: str,
                             now_ms: int) -> bool:
        """Open → `status` (approved, dropped); False if it was not open (another node, or
        a second request, closed it first)."""
        def run():
            with transaction(self._db) as db:
                return db.execute(
                    "UPDATE dispatch_proposals SET status = ?, closed_ms = ?, closed_by = ? "
                    "WHERE id = ? AND status = 'open'",
                    (status, now_ms, by, proposal_id)).rowcount == 1

        return await self._run(run)
