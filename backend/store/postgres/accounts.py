"""Accounts on PostgreSQL: users, API tokens, sessions, vehicle groups, audit.

A mixin of `PostgresStore` (sql/postgres/0004_accounts.sql), the same calls and answers as
backend/store/sqlite/accounts.py. Secrets arrive already hashed (backend/auth/).
"""

from __future__ import annotations

import json

import asyncpg

from ...driver.storage import driver_link
from .db import MS as _MS
from .db import PostgresDb
from .db import ms_of as _ms

_USER = ("id, name, role, password_hash, created_at, disabled_at, all_vehicles, "
         "must_change_password")
_N = 8  # columns of _USER: the extra ones follow


def _user(r) -> dict:
    return dict(id=r[0], name=r[1], role=r[2], password_hash=r[3], created_ms=_ms(r[4]),
                disabled=r[5] is not None, all_vehicles=r[6], must_change_password=r[7])


class PostgresAccounts(PostgresDb):
    # --- users ----------------------------------------------------------------------------

    async def add_user(self, name: str, role: str, password_hash: str,
                       all_vehicles: bool = False) -> int:
        """A new user's id; ValueError if the name is taken. Without `all_vehicles` the user
        sees only the vehicles of its groups (none until it is in one)."""
        try:
            return await self._pool.fetchval(
                "INSERT INTO users (name, role, password_hash, all_vehicles) "
                "VALUES ($1, $2, $3, $4) RETURNING id", name, role, password_hash, all_vehicles)
        except asyncpg.UniqueViolationError:
            raise ValueError(f"user {name!r} exists") from None

    async def user(self, name: str) -> dict | None:
        """The user with its password hash (for logging in), or None."""
        r = await self._pool.fetchrow(f"SELECT {_USER} FROM users WHERE name = $1", name)
        return None if r is None else _user(r)

    async def users(self) -> list[dict]:
        rows = await self._pool.fetch(
            f"SELECT {_USER}, array(SELECT group_name FROM group_members m "
            "WHERE m.user_id = u.id ORDER BY 1) FROM users u ORDER BY name")
        out = []
        for r in rows:
            u = _user(r)
            del u["password_hash"]
            u["groups"] = list(r[_N])
            out.append(u)
        return out

    async def update_user(self, name: str, role: str | None = None,
                          password_hash: str | None = None, disabled: bool | None = None,
                          all_vehicles: bool | None = None,
                          must_change_password: bool | None = None) -> bool:
        """Change what is given; a new password or disabling ends the user's sessions, and a
        new password clears `must_change_password` unless that is given too."""
        if password_hash is not None and must_change_password is None:
            must_change_password = False
        async with self._pool.acquire() as conn, conn.transaction():
            uid = await conn.fetchval("SELECT id FROM users WHERE name = $1 FOR UPDATE", name)
            if uid is None:
                return False
            if role is not None:
                await conn.execute("UPDATE users SET role = $1 WHERE id = $2", role, uid)
            if password_hash is not None:
                await conn.execute("UPDATE users SET password_hash = $1 WHERE id = $2",
                                   password_hash, uid)
            if disabled is not None:
                await conn.execute(
                    "UPDATE users SET disabled_at = CASE WHEN $1 THEN now() END WHERE id = $2",
                    disabled, uid)
            if all_vehicles is not None:
                await conn.execute("UPDATE users SET all_vehicles = $1 WHERE id = $2",
                                   all_vehicles, uid)
            if must_change_password is not None:
                await conn.execute("UPDATE users SET must_change_password = $1 WHERE id = $2",
                                   must_change_password, uid)
            if password_hash is not None or disabled:
                await conn.execute("DELETE FROM sessions WHERE user_id = $1", uid)
        return True

    async def account(self, user_id: int) -> dict | None:
        """What a request's principal is made of: the user, its groups and (None: all) the
        vehicles it may see: all for an admin or a user with `all_vehicles`, else those of its
        groups (none without one: access fails closed)."""
        r = await self._pool.fetchrow(
            f"SELECT {_USER}, array(SELECT group_name FROM group_members m "
            "WHERE m.user_id = u.id ORDER BY 1), array(SELECT DISTINCT v.vehicle_id "
            "FROM group_members m JOIN group_vehicles v USING (group_name) "
            "WHERE m.user_id = u.id ORDER BY 1), "
            "(SELECT d.id FROM drivers d WHERE d.account_id = u.name), "
            "(SELECT d.body::text FROM drivers d WHERE d.account_id = u.name) "
            "FROM users u WHERE id = $1", user_id)
        if r is None:
            return None
        u = _user(r)
        del u["password_hash"]
        u["groups"] = list(r[_N])
        u["vehicles"] = None if u["all_vehicles"] or u["role"] == "admin" else list(r[_N + 1])
        u["driver"] = None if r[_N + 2] is None else driver_link(r[_N + 2], r[_N + 3])
        return u

    # --- API tokens -----------------------------------------------------------------------

    async def add_api_token(self, name: str, label: str, token_hash: str) -> int | None:
        """The new token's id, or None if there is no such user."""
        return await self._pool.fetchval(
            "INSERT INTO api_tokens (user_id, label, token_hash) "
            "SELECT id, $2, $3 FROM users WHERE name = $1 RETURNING id", name, label, token_hash)

    async def api_tokens(self, name: str) -> list[dict]:
        rows = await self._pool.fetch(
            "SELECT t.id, t.label, t.created_at FROM api_tokens t JOIN users u "
            "ON u.id = t.user_id WHERE u.name = $1 ORDER BY t.id", name)
        return [dict(id=r[0], label=r[1], created_ms=_ms(r[2])) for r in rows]

    async def delete_api_token(self, name: str, token_id: int) -> bool:
        status = await self._pool.execute(
            "DELETE FROM api_tokens WHERE id = $1 AND user_id = "
            "(SELECT id FROM users WHERE name = $2)", token_id, name)
        return status != "DELETE 0"

    async def token_user(self, token_hash: str) -> int | None:
        return await self._pool.fetchval(
            "SELECT user_id FROM api_tokens WHERE token_hash = $1", token_hash)

    # --- sessions -------------------------------------------------------------------------

    async def add_session(self, id_hash: str, user_id: int, now_ms: int) -> None:
        await self._pool.execute("INSERT INTO sessions VALUES ($1, $2, $3, $3)",
                                 id_hash, user_id, now_ms)

    async def session(self, id_hash: str) -> dict | None:
        r = await self._pool.fetchrow(
            "SELECT user_id, created_ms, seen_ms FROM sessions WHERE id_hash = $1", id_hash)
        return None if r is None else dict(r)

    async def touch_session(self, id_hash: str, now_ms: int) -> None:
        await self._pool.execute("UPDATE sessions SET seen_ms = $1 WHERE id_hash = $2",
                                 now_ms, id_hash)

    async def delete_session(self, id_hash: str) -> None:
        await self._pool.execute("DELETE FROM sessions WHERE id_hash = $1", id_hash)

    async def prune_sessions(self, seen_before_ms: int, created_before_ms: int) -> int:
        """Delete sessions idle since, or created before, the given times."""
        status = await self._pool.execute(
            "DELETE FROM sessions WHERE seen_ms < $1 OR created_ms < $2",
            seen_before_ms, created_before_ms)
        return int(status.split()[-1])

    # --- vehicle groups -------------------------------------------------------------------

    async def groups(self) -> list[dict]:
        rows = await self._pool.fetch(
            "SELECT g.name, array(SELECT vehicle_id FROM group_vehicles v "
            "WHERE v.group_name = g.name ORDER BY 1), array(SELECT u.name FROM group_members m "
            "JOIN users u ON u.id = m.user_id WHERE m.group_name = g.name ORDER BY 1) "
            "FROM groups g ORDER BY 1")
        return [dict(name=r[0], vehicles=list(r[1]), members=list(r[2])) for r in rows]

    async def put_group(self, name: str, vehicles: list[str] | None = None,
                        members: list[str] | None = None) -> None:
        """Create the group, and replace its vehicles and members where given.
        ValueError (nothing changed) if a member is not a user."""
        async with self._pool.acquire() as conn, conn.transaction():
            ids = []
            for m in members or []:
                uid = await conn.fetchval("SELECT id FROM users WHERE name = $1", m)
                if uid is None:
                    raise ValueError(f"no user {m!r}")
                ids.append(uid)
            await conn.execute("INSERT INTO groups (name) VALUES ($1) ON CONFLICT DO NOTHING",
                               name)
            if vehicles is not None:
                await conn.execute("DELETE FROM group_vehicles WHERE group_name = $1", name)
                await conn.executemany(
                    "INSERT INTO group_vehicles VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(name, v) for v in vehicles])
            if members is not None:
                await conn.execute("DELETE FROM group_members WHERE group_name = $1", name)
                await conn.executemany(
                    "INSERT INTO group_members VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(name, i) for i in ids])

    async def delete_group(self, name: str) -> bool:
        return await self._pool.execute("DELETE FROM groups WHERE name = $1", name) != "DELETE 0"

    # --- audit ----------------------------------------------------------------------------

    async def add_audit(self, time_ms: int, user: str, action: str, target: str,
                        detail: dict | None) -> None:
        await self._pool.execute(
            f"INSERT INTO audit (time, user_name, action, target, detail) "
            f"VALUES ({_MS.format('$1::bigint')}, $2, $3, $4, $5::jsonb)",
            time_ms, user, action, target, None if detail is None else json.dumps(detail))

    async def audit_entries(self, from_ms: int, to_ms: int, limit: int) -> list[dict]:
        """Entries in [from, to), newest first."""
        rows = await self._pool.fetch(
            "SELECT time, user_name, action, target, detail FROM audit "
            f"WHERE time >= {_MS.format('$1::bigint')} AND time < {_MS.format('$2::bigint')} "
            "ORDER BY time DESC, id DESC LIMIT $3", from_ms, to_ms, limit)
        return [dict(time_ms=_ms(r[0]), user=r[1], action=r[2], target=r[3],
                     detail=None if r[4] is None else json.loads(r[4])) for r in rows]
