"""Notifications in the embedded store (sql/sqlite/0017_notify.sql): subscriptions, the outbox
and its delivery log, the event sources' cursors, and the leases of once-per-cluster work
(docs/notifications.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .db import SqliteDb, transaction

_SUB = "id, owner, group_name, body, secret, created_ms"


def _sub(r) -> dict:
    return {"id": r[0], "owner": r[1], "group": r[2], "body": json.loads(r[3]),
            "secret": r[4], "created_ms": r[5]}


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# A dispatch mail's payload holds its tracking link's token: gone once the mail left (or was
# given up), so the database keeps only the link's hash (backend/notify/dispatch_mail.py).
_SCRUB = "CASE WHEN event_id LIKE 'link.%' THEN '{}' ELSE event END"

class SqliteNotify(SqliteDb):
    async def add_subscription(self, owner: str, group: str | None, body: dict, secret: str,
                               now_ms: int) -> int:
        def add() -> int:
            with transaction(self._db) as db:
                return db.execute(
                    "INSERT INTO notify_subscriptions (owner, group_name, body, secret, "
                    "created_ms) VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (owner, group, _json(body), secret, now_ms)).fetchone()[0]

        return await self._run(add)

    async def subscriptions(self, owner: str | None = None) -> list[dict]:
        def rows():
            if owner is None:
                cur = self._db.execute(f"SELECT {_SUB} FROM notify_subscriptions ORDER BY id")
            else:
                cur = self._db.execute(f"SELECT {_SUB} FROM notify_subscriptions "
                                       "WHERE owner = ? ORDER BY id", (owner,))
            return [_sub(r) for r in cur]

        return await self._run(rows)

    async def subscription(self, sub_id: int) -> dict | None:
        def row():
            r = self._db.execute(f"SELECT {_SUB} FROM notify_subscriptions WHERE id = ?",
                                 (sub_id,)).fetchone()
            return None if r is None else _sub(r)

        return await self._run(row)

    async def delete_subscription(self, sub_id: int) -> bool:
        def delete() -> bool:
            with transaction(self._db) as db:
                return db.execute("DELETE FROM notify_subscriptions WHERE id = ?",
                                  (sub_id,)).rowcount > 0

        return await self._run(delete)

    async def notify_cursor(self, name: str) -> int:
        def row() -> int:
            r = self._db.execute("SELECT position FROM notify_cursors WHERE name = ?",
                                 (name,)).fetchone()
            return 0 if r is None else r[0]

        return await self._run(row)

    async def enqueue_notifications(self, rows: Sequence[tuple[int, str, dict, int]],
                                    now_ms: int, cursor: tuple[str, int] | None = None) -> int:
        def enqueue() -> int:
            added = 0
            with transaction(self._db) as db:
                for sub_id, event_id, event, due_ms in rows:
                    added += db.execute(
                        "INSERT INTO notify_outbox (subscription_id, event_id, event, state, "
                        "next_ms, created_ms) SELECT ?, ?, ?, 'pending', ?, ? WHERE EXISTS "
                        "(SELECT 1 FROM notify_subscriptions WHERE id = ?) "
                        "ON CONFLICT (subscription_id, event_id) DO NOTHING",
                        (sub_id, event_id, _json(event), due_ms, now_ms, sub_id)).rowcount
                if cursor is not None:
                    db.execute("INSERT INTO notify_cursors (name, position) VALUES (?, ?) "
                               "ON CONFLICT (name) DO UPDATE SET position = "
                               "max(position, excluded.position)", cursor)
            return added

        return await self._run(enqueue)

    async def due_notifications(self, now_ms: int, limit: int) -> list[dict]:
        def rows():
            return [{"id": r[0], "subscription_id": r[1], "event_id": r[2],
                     "event": json.loads(r[3]), "attempts": r[4], "next_ms": r[5]}
                    for r in self._db.execute(
                        "SELECT id, subscription_id, event_id, event, attempts, next_ms "
                        "FROM notify_outbox WHERE state = 'pending' AND next_ms <= ? "
                        "ORDER BY next_ms, id LIMIT ?", (now_ms, limit))]

        return await self._run(rows)

    async def finish_notifications(self, outcomes: Sequence[tuple[int, bool, str, int | None]],
                                   now_ms: int) -> None:
        def finish() -> None:
            with transaction(self._db) as db:
                for outbox_id, ok, detail, retry_ms in outcomes:
                    r = db.execute("SELECT subscription_id FROM notify_outbox WHERE id = ? "
                                   "AND state = 'pending'", (outbox_id,)).fetchone()
                    if r is None:  # delivered meanwhile (another holder), or unsubscribed
                        continue
                    db.execute("INSERT INTO notify_attempts (outbox_id, subscription_id, "
                               "at_ms, ok, detail) VALUES (?, ?, ?, ?, ?)",
                               (outbox_id, r[0], now_ms, int(ok), detail))
                    if ok or retry_ms is None:
                        db.execute("UPDATE notify_outbox SET state = ?, attempts = attempts + 1"
                                   f", done_ms = ?, event = {_SCRUB} WHERE id = ?",
                                   ("delivered" if ok else "failed", now_ms, outbox_id))
                    else:
                        db.execute("UPDATE notify_outbox SET attempts = attempts + 1, "
                                   "next_ms = ? WHERE id = ?", (retry_ms, outbox_id))

        await self._run(finish)

    async def outbox_has(self, event_id: str) -> bool:
        def row() -> bool:
            return self._db.execute("SELECT 1 FROM notify_outbox WHERE event_id = ? LIMIT 1",
                                    (event_id,)).fetchone() is not None

        return await self._run(row)

    async def delivery_log(self, sub_id: int, limit: int) -> list[dict]:
        def rows():
            return [{"id": r[0], "event_id": r[1], "at_ms": r[2], "ok": bool(r[3]),
                     "detail": r[4], "state": r[5], "attempts": r[6]}
                    for r in self._db.execute(
                        "SELECT a.id, o.event_id, a.at_ms, a.ok, a.detail, o.state, o.attempts "
                        "FROM notify_attempts a JOIN notify_outbox o ON o.id = a.outbox_id "
                        "WHERE a.subscription_id = ? ORDER BY a.id DESC LIMIT ?",
                        (sub_id, limit))]

        return await self._run(rows)

    async def take_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        def take() -> bool:
            with transaction(self._db) as db:
                db.execute("INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, ?) "
                           "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                           "expires_ms = excluded.expires_ms "
                           "WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?",
                           (name, holder, now_ms + ttl_ms, now_ms))
                r = db.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
                return r is not None and r[0] == holder

        return await self._run(take)

    async def release_lease(self, name: str, holder: str) -> None:
        def release() -> None:
            with transaction(self._db) as db:
                db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

        await self._run(release)
