"""Tracking links, inbound sources and idempotency keys of the PostgreSQL store
(sql/postgres/0018_links.sql); the same behaviour as backend/store/sqlite/links.py."""

from __future__ import annotations

from ...links.model import TrackingLink
from ...links.storage import LINK_COLUMNS, Claim, ClaimResult, link_from_row, link_row
from .db import PostgresDb

_MARKS = ", ".join(f"${i}" for i in range(1, 9))


def done_jobs_sql(columns: str) -> str:
    """The export's query (its plan uses the index `jobs_done`, sql/postgres/0025_edges.sql)."""
    return (f"SELECT {columns} FROM jobs WHERE state IN ('completed', 'failed', 'skipped', "
            "'cancelled') AND updated_ms >= $1 AND updated_ms < $2 "
            "ORDER BY updated_ms, id COLLATE \"C\" LIMIT $3")


class PostgresLinks(PostgresDb):
    """Mixed into PostgresStore (uses its asyncpg pool)."""

    # --- tracking links ---------------------------------------------------------------------

    async def add_link(self, link: TrackingLink, max_live: int) -> bool:
        """Store a new link unless its job has `max_live` unrevoked ones (False)."""
        async with self._pool.acquire() as conn, conn.transaction():
            # one link creation per job at a time, so two cannot both pass the count
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('link:' || $1))",
                               link.job_id)
            n = await conn.fetchval("SELECT count(*) FROM tracking_links WHERE job_id = $1 "
                                    "AND revoked_ms IS NULL", link.job_id)
            if n >= max_live:
                return False
            await conn.execute(f"INSERT INTO tracking_links ({LINK_COLUMNS}) VALUES ({_MARKS})",
                               *link_row(link))
            return True

    async def link_by_hash(self, token_hash: str) -> TrackingLink | None:
        r = await self._pool.fetchrow(f"SELECT {LINK_COLUMNS} FROM tracking_links WHERE "
                                      "token_hash = $1", token_hash)
        return None if r is None else link_from_row(r)

    async def link(self, link_id: str) -> TrackingLink | None:
        r = await self._pool.fetchrow(f"SELECT {LINK_COLUMNS} FROM tracking_links WHERE id = $1",
                                      link_id)
        return None if r is None else link_from_row(r)

    async def job_links(self, job_id: str) -> list[TrackingLink]:
        return [link_from_row(r) for r in await self._pool.fetch(
            f"SELECT {LINK_COLUMNS} FROM tracking_links WHERE job_id = $1 "
            "ORDER BY created_ms, id COLLATE \"C\"", job_id)]

    async def revoke_link(self, link_id: str, now_ms: int) -> TrackingLink | None:
        """Revoke (once: a second revocation keeps the first time); None if unknown."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE tracking_links SET revoked_ms = $1 WHERE id = $2 AND "
                               "revoked_ms IS NULL", now_ms, link_id)
            r = await conn.fetchrow(f"SELECT {LINK_COLUMNS} FROM tracking_links WHERE id = $1",
                                    link_id)
            return None if r is None else link_from_row(r)

    # --- inbound sources (signed webhooks) --------------------------------------------------

    async def put_inbound_source(self, source_id: str, secret: str, now_ms: int,
                                 by: str) -> bool:
        """Create a source or give it a new secret; True if created."""
        return await self._pool.fetchval(
            "INSERT INTO inbound_sources AS s (id, secret, created_ms, created_by) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET secret = excluded.secret, "
            "created_ms = excluded.created_ms, created_by = excluded.created_by "
            "RETURNING (xmax = 0)", source_id, secret, now_ms, by)

    async def inbound_secret(self, source_id: str) -> str | None:
        return await self._pool.fetchval("SELECT secret FROM inbound_sources WHERE id = $1",
                                         source_id)

    async def inbound_sources(self) -> list[dict]:
        return [{"id": r[0], "created_ms": r[1], "created_by": r[2]} for r in
                await self._pool.fetch("SELECT id, created_ms, created_by FROM inbound_sources "
                                       "ORDER BY id COLLATE \"C\"")]

    async def delete_inbound_source(self, source_id: str) -> bool:
        status = await self._pool.execute("DELETE FROM inbound_sources WHERE id = $1",
                                          source_id)
        return status != "DELETE 0"

    # --- idempotency keys -------------------------------------------------------------------

    async def claim_request(self, source: str, key: str, request_hash: str, now_ms: int,
                            stale_ms: int) -> ClaimResult:
        """As SqliteLinks.claim_request."""
        async with self._pool.acquire() as conn, conn.transaction():
            r = await conn.fetchrow("SELECT request_hash, status, response, created_ms FROM "
                                    "inbound_requests WHERE source = $1 AND key = $2 "
                                    "FOR UPDATE", source, key)
            if r is not None:
                if r[0] != request_hash:
                    return ClaimResult(Claim.MISMATCH)
                if r[1]:
                    return ClaimResult(Claim.REPLAY, r[1], r[2])
                if now_ms - r[3] < stale_ms:
                    return ClaimResult(Claim.BUSY)
                await conn.execute("UPDATE inbound_requests SET created_ms = $3 WHERE "
                                   "source = $1 AND key = $2", source, key, now_ms)
                return ClaimResult(Claim.NEW)
            took = await conn.fetchval(
                "INSERT INTO inbound_requests (source, key, request_hash, status, response, "
                "created_ms) VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT DO NOTHING RETURNING 1",
                source, key, request_hash, now_ms)
            return ClaimResult(Claim.NEW if took else Claim.BUSY)

    async def finish_request(self, source: str, key: str, status: int, response: str) -> None:
        await self._pool.execute("UPDATE inbound_requests SET status = $3, response = $4 "
                                 "WHERE source = $1 AND key = $2", source, key, status, response)

    async def drop_request(self, source: str, key: str) -> None:
        await self._pool.execute("DELETE FROM inbound_requests WHERE source = $1 AND key = $2 "
                                 "AND status = 0", source, key)

    async def purge_requests(self, before_ms: int) -> int:
        status = await self._pool.execute("DELETE FROM inbound_requests WHERE created_ms < $1",
                                          before_ms)
        return int(status.split()[-1])

    # --- export (read only, over the dispatch tables) ---------------------------------------

    async def done_jobs(self, from_ms: int, to_ms: int, limit: int) -> list[tuple]:
        """As SqliteLinks.done_jobs."""
        from ...dispatch.storage import TRANSITION_COLUMNS, transition_from_row
        from .dispatch import _JOB_COLUMNS, _record

        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                  readonly=True):
            recs = [_record(r) for r in await conn.fetch(done_jobs_sql(_JOB_COLUMNS),
                                                         from_ms, to_ms, limit)]
            ts: dict[str, list] = {r.job.id: [] for r in recs}
            for r in await conn.fetch(f"SELECT {TRANSITION_COLUMNS} FROM job_transitions "
                                      "WHERE job_id = ANY($1::text[]) ORDER BY seq", list(ts)):
                t = transition_from_row(r)
                ts[t.job_id].append(t)
        return [(r, ts[r.job.id]) for r in recs]
