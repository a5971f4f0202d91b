"""Notifications in the PostgreSQL store (sql/postgres/0017_notify.sql): as
backend/store/sqlite/notify.py. The lease is one upsert: two nodes asking at once are
serialised by the row lock, and only the holder (or anyone after expiry) gets it."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .db import PostgresDb

_SUB = "id, owner, group_name, body, secret, created_ms"


def _sub(r) -> dict:
    return {"id": r[0], "owner": r[1], "group": r[2], "body": json.loads(r[3]),
            "secret": r[4], "created_ms": r[5]}


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# A dispatch mail's payload holds its tracking link's token: gone once the mail left (or was
# given up), so the database keeps only the link's hash (backend/notify/dispatch_mail.py).
_SCRUB = "CASE WHEN event_id LIKE 'link.%' THEN '{}' ELSE event END"

class PostgresNotify(PostgresDb):
    async def add_subscription(self, owner: str, group: str | None, body: dict, secret: str,
                               now_ms: int) -> int:
        return await self._pool.fetchval(
            "INSERT INTO notify_subscriptions (owner, group_name, body, secret, created_ms) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id", owner, group, _json(body), secret,
            now_ms)

    async def subscriptions(self, owner: str | None = None) -> list[dict]:
        if owner is None:
            rows = await self._pool.fetch(f"SELECT {_SUB} FROM notify_subscriptions ORDER BY id")
        else:
            rows = await self._pool.fetch(f"SELECT {_SUB} FROM notify_subscriptions "
                                          "WHERE owner = $1 ORDER BY id", owner)
        return [_sub(r) for r in rows]

    async def subscription(self, sub_id: int) -> dict | None:
        r = await self._pool.fetchrow(f"SELECT {_SUB} FROM notify_subscriptions WHERE id = $1",
                                      sub_id)
        return None if r is None else _sub(r)

    async def delete_subscription(self, sub_id: int) -> bool:
        done = await self._pool.execute("DELETE FROM notify_subscriptions WHERE id = $1", sub_id)
        return done != "DELETE 0"

    async def notify_cursor(self, name: str) -> int:
        v = await self._pool.fetchval("SELECT position FROM notify_cursors WHERE name = $1", name)
        return 0 if v is None else v

    async def enqueue_notifications(self, rows: Sequence[tuple[int, str, dict, int]],
                                    now_ms: int, cursor: tuple[str, int] | None = None) -> int:
        added = 0
        async with self._pool.acquire() as conn, conn.transaction():
            for sub_id, event_id, event, due_ms in rows:
                done = await conn.execute(
                    "INSERT INTO notify_outbox (subscription_id, event_id, event, state, "
                    "next_ms, created_ms) SELECT $1, $2, $3, 'pending', $4, $5 WHERE EXISTS "
                    "(SELECT 1 FROM notify_subscriptions WHERE id = $1) "
                    "ON CONFLICT (subscription_id, event_id) DO NOTHING",
                    sub_id, event_id, _json(event), due_ms, now_ms)
                added += done.endswith(" 1")
            if cursor is not None:
                await conn.execute(
                    "INSERT INTO notify_cursors (name, position) VALUES ($1, $2) "
                    "ON CONFLICT (name) DO UPDATE SET position = "
                    "greatest(notify_cursors.position, excluded.position)", *cursor)
        return added

    async def due_notifications(self, now_ms: int, limit: int) -> list[dict]:
        rows = await self._pool.fetch(
            "SELECT id, subscription_id, event_id, event, attempts, next_ms FROM notify_outbox "
            "WHERE state = 'pending' AND next_ms <= $1 ORDER BY next_ms, id LIMIT $2",
            now_ms, limit)
        return [{"id": r[0], "subscription_id": r[1], "event_id": r[2],
                 "event": json.loads(r[3]), "attempts": r[4], "next_ms": r[5]} for r in rows]

    async def finish_notifications(self, outcomes: Sequence[tuple[int, bool, str, int | None]],
                                   now_ms: int) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            for outbox_id, ok, detail, retry_ms in outcomes:
                sub_id = await conn.fetchval(
                    "SELECT subscription_id FROM notify_outbox WHERE id = $1 "
                    "AND state = 'pending' FOR UPDATE", outbox_id)
                if sub_id is None:  # delivered meanwhile (another holder), or unsubscribed
                    continue
                await conn.execute(
                    "INSERT INTO notify_attempts (outbox_id, subscription_id, at_ms, ok, detail) "
                    "VALUES ($1, $2, $3, $4, $5)", outbox_id, sub_id, now_ms, ok, detail)
                if ok or retry_ms is None:
                    await conn.execute(
                        "UPDATE notify_outbox SET state = $1, attempts = attempts + 1, "
                        f"done_ms = $2, event = {_SCRUB} WHERE id = $3",
                        "delivered" if ok else "failed", now_ms, outbox_id)
                else:
                    await conn.execute("UPDATE notify_outbox SET attempts = attempts + 1, "
                                       "next_ms = $1 WHERE id = $2", retry_ms, outbox_id)

    async def outbox_has(self, event_id: str) -> bool:
        return await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM notify_outbox WHERE event_id = $1)", event_id)

    async def delivery_log(self, sub_id: int, limit: int) -> list[dict]:
        rows = await self._pool.fetch(
            "SELECT a.id, o.event_id, a.at_ms, a.ok, a.detail, o.state, o.attempts "
            "FROM notify_attempts a JOIN notify_outbox o ON o.id = a.outbox_id "
            "WHERE a.subscription_id = $1 ORDER BY a.id DESC LIMIT $2", sub_id, limit)
        return [{"id": r[0], "event_id": r[1], "at_ms": r[2], "ok": r[3], "detail": r[4],
                 "state": r[5], "attempts": r[6]} for r in rows]

    async def take_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        got = await self._pool.fetchval(
            "INSERT INTO leases AS l (name, holder, expires_ms) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "expires_ms = excluded.expires_ms "
            "WHERE l.holder = excluded.holder OR l.expires_ms <= $4 RETURNING holder",
            name, holder, now_ms + ttl_ms, now_ms)
        return got == holder

    async def release_lease(self, name: str, holder: str) -> None:
        await self._pool.execute("DELETE FROM leases WHERE name = $1 AND holder = $2",
                                 name, holder)
