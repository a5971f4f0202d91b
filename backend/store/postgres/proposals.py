"""Dispatch proposals of the PostgreSQL store (sql/postgres/0022_dispatch_proposals.sql); the
same behaviour as backend/store/sqlite/proposals.py."""

from __future__ import annotations

import json

from ...dispatch.storage import MAX_OPEN_PROPOSALS, StoredProposal
from .db import PostgresDb

_COLUMNS = ("id, created_ms, based_on_version, status, cause, body::text, closed_ms, "
            "closed_by")


def _proposal(r) -> StoredProposal:
    return StoredProposal(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])


class PostgresProposals(PostgresDb):
    """Mixed into PostgresStore (uses its asyncpg pool)."""

    async def put_proposal(self, p: StoredProposal,
                           keep_open: int = MAX_OPEN_PROPOSALS) -> list[str]:
        """As SqliteProposals.put_proposal."""
        body = json.dumps(p.body, separators=(",", ":"), sort_keys=True)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO dispatch_proposals (id, created_ms, based_on_version, status, "
                "cause, body) VALUES ($1, $2, $3, 'open', $4, $5::jsonb) "
                "ON CONFLICT (id) DO NOTHING",
                p.id, p.created_ms, str(p.based_on_version), p.cause, body)
            rows = await conn.fetch(
                "UPDATE dispatch_proposals SET status = 'dropped', closed_ms = $1, "
                "closed_by = 'newer proposals' WHERE id IN (SELECT id FROM dispatch_proposals "
                "WHERE status = 'open' ORDER BY created_ms DESC, id COLLATE \"C\" DESC "
                "OFFSET $2) RETURNING id", p.created_ms, keep_open)
            return sorted(r[0] for r in rows)

    async def proposal(self, proposal_id: str) -> StoredProposal | None:
        r = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM dispatch_proposals WHERE id = $1", proposal_id)
        return None if r is None else _proposal(r)

    async def proposals(self, status: str | None = None,
                        limit: int = MAX_OPEN_PROPOSALS) -> list[StoredProposal]:
        where = "WHERE status = $2" if status else ""
        args = (limit, status) if status else (limit,)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM dispatch_proposals {where} "
            'ORDER BY created_ms DESC, id COLLATE "C" DESC LIMIT $1', *args)
        return [_proposal(r) for r in rows]

    async def close_proposal(self, proposal_id: str, status: str, by: str,
                             now_ms: int) -> bool:
        """As SqliteProposals.close_proposal."""
        done = await self._pool.execute(
            "UPDATE dispatch_proposals SET status = $1, closed_ms = $2, closed_by = $3 "
            "WHERE id = $4 AND status = 'open'", status, now_ms, by, proposal_id)
        return done.endswith(" 1")
