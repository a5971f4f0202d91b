"""Tracking links, inbound sources and idempotency keys of the SQLite store
(sql/sqlite/0018_links.sql; docs/customers.md)."""

from __future__ import annotations

from ...links.model import TrackingLink
from ...links.storage import LINK_COLUMNS, Claim, ClaimResult, link_from_row, link_row
from .db import SqliteDb, transaction


def done_jobs_sql(columns: str) -> str:
    """The export's query on the index `jobs_done` (sql/sqlite/0025_edges.sql), named: without
    statistics SQLite takes `jobs_state` (every final job of all time, then a sort)."""
    return (f"SELECT {columns} FROM jobs INDEXED BY jobs_done WHERE state IN ('completed', "
            "'failed', 'skipped', 'cancelled') AND updated_ms >= ? AND updated_ms < ? "
            "ORDER BY updated_ms, id LIMIT ?")


class SqliteLinks(SqliteDb):
    """Mixed into SqliteStore: every call runs on the store's one worker thread."""

    # --- tracking links ---------------------------------------------------------------------

    async def add_link(self, link: TrackingLink, max_live: int) -> bool:
        """Store a new link unless its job has `max_live` unrevoked ones (False)."""
        def run():
            with transaction(self._db) as db:
                n = db.execute("SELECT count(*) FROM tracking_links WHERE job_id = ? AND "
                               "revoked_ms IS NULL", (link.job_id,)).fetchone()[0]
                if n >= max_live:
                    return False
                db.execute(f"INSERT INTO tracking_links ({LINK_COLUMNS}) VALUES "
                           f"({','.join('?' * 8)})", link_row(link))
                return True

        return await self._run(run)

    async def link_by_hash(self, token_hash: str) -> TrackingLink | None:
        def row():
            r = self._db.execute(f"SELECT {LINK_COLUMNS} FROM tracking_links WHERE "
                                 "token_hash = ?", (token_hash,)).fetchone()
            return None if r is None else link_from_row(r)

        return await self._run(row)

    async def link(self, link_id: str) -> TrackingLink | None:
        def row():
            r = self._db.execute(f"SELECT {LINK_COLUMNS} FROM tracking_links WHERE id = ?",
                                 (link_id,)).fetchone()
            return None if r is None else link_from_row(r)

        return await self._run(row)

    async def job_links(self, job_id: str) -> list[TrackingLink]:
        def rows():
            return [link_from_row(r) for r in self._db.execute(
                f"SELECT {LINK_COLUMNS} FROM tracking_links WHERE job_id = ? "
                "ORDER BY created_ms, id", (job_id,))]

        return await self._run(rows)

    async def revoke_link(self, link_id: str, now_ms: int) -> TrackingLink | None:
        """Revoke (once: a second revocation keeps the first time); None if unknown."""
        def run():
            with transaction(self._db) as db:
                db.execute("UPDATE tracking_links SET revoked_ms = ? WHERE id = ? AND "
                           "revoked_ms IS NULL", (now_ms, link_id))
                r = db.execute(f"SELECT {LINK_COLUMNS} FROM tracking_links WHERE id = ?",
                               (link_id,)).fetchone()
                return None if r is None else link_from_row(r)

        return await self._run(run)

    # --- inbound sources (signed webhooks) --------------------------------------------------

    async def put_inbound_source(self, source_id: str, secret: str, now_ms: int,
                                 by: str) -> bool:
        """Create a source or give it a new secret; True if created."""
        def run():
            with transaction(self._db) as db:
                existed = db.execute("SELECT 1 FROM inbound_sources WHERE id = ?",
                                     (source_id,)).fetchone() is not None
                db.execute("INSERT INTO inbound_sources (id, secret, created_ms, created_by) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                           "secret = excluded.secret, created_ms = excluded.created_ms, "
                           "created_by = excluded.created_by", (source_id, secret, now_ms, by))
                return not existed

        return await self._run(run)

    async def inbound_secret(self, source_id: str) -> str | None:
        def row():
            r = self._db.execute("SELECT secret FROM inbound_sources WHERE id = ?",
                                 (source_id,)).fetchone()
            return None if r is None else r[0]

        return await self._run(row)

    async def inbound_sources(self) -> list[dict]:
        def rows():
            return [{"id": r[0], "created_ms": r[1], "created_by": r[2]} for r in
                    self._db.execute("SELECT id, created_ms, created_by FROM inbound_sources "
                                     "ORDER BY id")]

        return await self._run(rows)

    async def delete_inbound_source(self, source_id: str) -> bool:
        def run():
            return self._db.execute("DELETE FROM inbound_sources WHERE id = ?",
                                    (source_id,)).rowcount > 0

        return await self._run(run)

    # --- idempotency keys -------------------------------------------------------------------

    async def claim_request(self, source: str, key: str, request_hash: str, now_ms: int,
                            stale_ms: int) -> ClaimResult:
        """Take the key for this request (NEW), or say it was done (REPLAY with the stored
        answer), is being done (BUSY) or was used for another request (MISMATCH). A claim
        older than `stale_ms` that never finished (a killed backend) is taken over."""
        def run():
            with transaction(self._db) as db:
                r = db.execute("SELECT request_hash, status, response, created_ms FROM "
                               "inbound_requests WHERE source = ? AND key = ?",
                               (source, key)).fetchone()
                if r is not None:
                    if r[0] != request_hash:
                        return ClaimResult(Claim.MISMATCH)
                    if r[1]:
                        return ClaimResult(Claim.REPLAY, r[1], r[2])
                    if now_ms - r[3] < stale_ms:
                        return ClaimResult(Claim.BUSY)
                db.execute("INSERT INTO inbound_requests (source, key, request_hash, status, "
                           "response, created_ms) VALUES (?, ?, ?, 0, '', ?) ON CONFLICT "
                           "(source, key) DO UPDATE SET created_ms = excluded.created_ms",
                           (source, key, request_hash, now_ms))
                return ClaimResult(Claim.NEW)

        return await self._run(run)

    async def finish_request(self, source: str, key: str, status: int, response: str) -> None:
        def run():
            self._db.execute("UPDATE inbound_requests SET status = ?, response = ? WHERE "
                             "source = ? AND key = ?", (status, response, source, key))

        await self._run(run)

    async def drop_request(self, source: str, key: str) -> None:
        def run():
            self._db.execute("DELETE FROM inbound_requests WHERE source = ? AND key = ? AND "
                             "status = 0", (source, key))

        await self._run(run)

    async def purge_requests(self, before_ms: int) -> int:
        def run():
            return self._db.execute("DELETE FROM inbound_requests WHERE created_ms < ?",
                                    (before_ms,)).rowcount

        return await self._run(run)

    # --- export (read only, over the dispatch tables) ---------------------------------------

    async def done_jobs(self, from_ms: int, to_ms: int, limit: int) -> list[tuple]:
        """Jobs in a final state whose last change lies in [from_ms, to_ms), oldest first, at
        most `limit`, each as (record, its transitions in order)."""
        from ...dispatch.storage import TRANSITION_COLUMNS, transition_from_row
        from .dispatch import _JOB_COLUMNS, _record

        def rows():
            recs = [_record(r) for r in self._db.execute(done_jobs_sql(_JOB_COLUMNS),
                                                         (from_ms, to_ms, limit))]
            ts: dict[str, list] = {r.job.id: [] for r in recs}
            ids = list(ts)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                for r in self._db.execute(
                        f"SELECT {TRANSITION_COLUMNS} FROM job_transitions WHERE job_id IN "
                        f"({','.join('?' * len(chunk))}) ORDER BY seq", chunk):
                    t = transition_from_row(r)
                    ts[t.job_id].append(t)
            return [(r, ts[r.job.id]) for r in recs]

        return await self._run(rows)
