"""Accounts on the embedded store: users, API tokens, sessions, vehicle groups, audit.

A mixin of `SqliteStore` (sql/sqlite/0004_accounts.sql); every call runs on the store's one
worker thread through `self._run`. Secrets arrive already hashed (backend/auth/).
"""

from __future__ import annotations

import json
import sqlite3

from geostream.clock import wall_ms

from ...driver.storage import driver_link
from .db import SqliteDb, transaction

_USER = ("id, name, role, password_hash, created_ms, disabled_ms, all_vehicles, "
         "must_change_password")


def _user(r: tuple) -> dict:
    return dict(id=r[0], name=r[1], role=r[2], password_hash=r[3], created_ms=r[4],
                disabled=r[5] is not None, all_vehicles=bool(r[6]),
                must_change_password=bool(r[7]))


class SqliteAccounts(SqliteDb):
    # --- users ----------------------------------------------------------------------------

    async def add_user(self, name: str, role: str, password_hash: str,
                       all_vehicles: bool = False) -> int:
        """A new user's id; ValueError if the name is taken. Without `all_vehicles` the user
        sees only the vehicles of its groups (none until it is in one)."""
        def add() -> int:
            try:
                return self._db.execute(
                    "INSERT INTO users (name, role, password_hash, created_ms, all_vehicles) "
                    "VALUES (?,?,?,?,?) RETURNING id",
                    (name, role, password_hash, wall_ms(), int(all_vehicles))).fetchall()[0][0]
            except sqlite3.IntegrityError:
                raise ValueError(f"user {name!r} exists") from None

        return await self._run(add)

    async def user(self, name: str) -> dict | None:
        """The user with its password hash (for logging in), or None."""
        def row():
            r = self._db.execute(f"SELECT {_USER} FROM users WHERE name=?", (name,)).fetchone()
            return None if r is None else _user(r)

        return await self._run(row)

    async def users(self) -> list[dict]:
        def rows():
            out = []
            for r in self._db.execute(f"SELECT {_USER} FROM users ORDER BY name").fetchall():
                u = _user(r)
                del u["password_hash"]
                u["groups"] = self._groups_of(u["id"])
                out.append(u)
            return out

        return await self._run(rows)

    async def update_user(self, name: str, role: str | None = None,
                          password_hash: str | None = None, disabled: bool | None = None,
                          all_vehicles: bool | None = None,
                          must_change_password: bool | None = None) -> bool:
        """Change what is given; a new password or disabling ends the user's sessions, and a
        new password clears `must_change_password` unless that is given too."""
        if password_hash is not None and must_change_password is None:
            must_change_password = False
        def update() -> bool:
            db = self._db
            row = db.execute("SELECT id FROM users WHERE name=?", (name,)).fetchone()
            if row is None:
                return False
            with transaction(db):
                if role is not None:
                    db.execute("UPDATE users SET role=? WHERE id=?", (role, row[0]))
                if password_hash is not None:
                    db.execute("UPDATE users SET password_hash=? WHERE id=?",
                               (password_hash, row[0]))
                if disabled is not None:
                    db.execute("UPDATE users SET disabled_ms=? WHERE id=?",
                               (wall_ms() if disabled else None, row[0]))
                if all_vehicles is not None:
                    db.execute("UPDATE users SET all_vehicles=? WHERE id=?",
                               (int(all_vehicles), row[0]))
                if must_change_password is not None:
                    db.execute("UPDATE users SET must_change_password=? WHERE id=?",
                               (int(must_change_password), row[0]))
                if password_hash is not None or disabled:
                    db.execute("DELETE FROM sessions WHERE user_id=?", (row[0],))
            return True

        return await self._run(update)

    async def account(self, user_id: int) -> dict | None:
        """What a request's principal is made of: the user, its groups and (None: all) the
        vehicles it may see: all for an admin or a user with `all_vehicles`, else those of its
        groups (none without one: access fails closed). `driver`: the drivers row that links the
        account (docs/driver.md: then it is a driver login and nothing else), else None."""
        def row():
            r = self._db.execute(f"SELECT {_USER} FROM users WHERE id=?", (user_id,)).fetchone()
            if r is None:
                return None
            u = _user(r)
            del u["password_hash"]
            u["groups"] = self._groups_of(user_id)
            d = self._db.execute("SELECT id, body FROM drivers WHERE account_id = ?",
                                 (u["name"],)).fetchone()
            u["driver"] = None if d is None else driver_link(d[0], d[1])
            u["vehicles"] = None
            if not u["all_vehicles"] and u["role"] != "admin":
                u["vehicles"] = sorted(v for (v,) in self._db.execute(
                    "SELECT DISTINCT v.vehicle_id FROM group_members m JOIN group_vehicles v "
                    "USING (group_name) WHERE m.user_id=?", (user_id,)))
            return u

        return await self._run(row)

    def _groups_of(self, user_id: int) -> list[str]:
        return [g for (g,) in self._db.execute(
            "SELECT group_name FROM group_members WHERE user_id=? ORDER BY 1", (user_id,))]

    # --- API tokens -----------------------------------------------------------------------

    async def add_api_token(self, name: str, label: str, token_hash: str) -> int | None:
        """The new token's id, or None if there is no such user."""
        def add():
            row = self._db.execute("SELECT id FROM users WHERE name=?", (name,)).fetchone()
            if row is None:
                return None
            return self._db.execute(
                "INSERT INTO api_tokens (user_id, label, token_hash, created_ms) "
                "VALUES (?,?,?,?) RETURNING id",
                (row[0], label, token_hash, wall_ms())).fetchall()[0][0]

        return await self._run(add)

    async def api_tokens(self, name: str) -> list[dict]:
        def rows():
            return [dict(id=a, label=b, created_ms=c) for a, b, c in self._db.execute(
                "SELECT t.id, t.label, t.created_ms FROM api_tokens t JOIN users u "
                "ON u.id = t.user_id WHERE u.name=? ORDER BY t.id", (name,))]

        return await self._run(rows)

    async def delete_api_token(self, name: str, token_id: int) -> bool:
        def delete() -> bool:
            return self._db.execute(
                "DELETE FROM api_tokens WHERE id=? AND user_id=(SELECT id FROM users "
                "WHERE name=?)", (token_id, name)).rowcount > 0

        return await self._run(delete)

    async def token_user(self, token_hash: str) -> int | None:
        def row():
            r = self._db.execute("SELECT user_id FROM api_tokens WHERE token_hash=?",
                                 (token_hash,)).fetchone()
            return None if r is None else r[0]

        return await self._run(row)

    # --- sessions -------------------------------------------------------------------------

    async def add_session(self, id_hash: str, user_id: int, now_ms: int) -> None:
        await self._run(lambda: self._db.execute(
            "INSERT INTO sessions VALUES (?,?,?,?)", (id_hash, user_id, now_ms, now_ms)))

    async def session(self, id_hash: str) -> dict | None:
        def row():
            r = self._db.execute("SELECT user_id, created_ms, seen_ms FROM sessions "
                                 "WHERE id_hash=?", (id_hash,)).fetchone()
            return None if r is None else dict(user_id=r[0], created_ms=r[1], seen_ms=r[2])

        return await self._run(row)

    async def touch_session(self, id_hash: str, now_ms: int) -> None:
        await self._run(lambda: self._db.execute(
            "UPDATE sessions SET seen_ms=? WHERE id_hash=?", (now_ms, id_hash)))

    async def delete_session(self, id_hash: str) -> None:
        await self._run(lambda: self._db.execute("DELETE FROM sessions WHERE id_hash=?",
                                                 (id_hash,)))

    async def prune_sessions(self, seen_before_ms: int, created_before_ms: int) -> int:
        """Delete sessions idle since, or created before, the given times."""
        return await self._run(lambda: self._db.execute(
            "DELETE FROM sessions WHERE seen_ms < ? OR created_ms < ?",
            (seen_before_ms, created_before_ms)).rowcount)

    # --- vehicle groups -------------------------------------------------------------------

    async def groups(self) -> list[dict]:
        def rows():
            db = self._db
            return [dict(name=g,
                         vehicles=[v for (v,) in db.execute(
                             "SELECT vehicle_id FROM group_vehicles WHERE group_name=? "
                             "ORDER BY 1", (g,))],
                         members=[m for (m,) in db.execute(
                             "SELECT u.name FROM group_members m JOIN users u ON u.id=m.user_id "
                             "WHERE m.group_name=? ORDER BY 1", (g,))])
                    for (g,) in db.execute("SELECT name FROM groups ORDER BY 1").fetchall()]

        return await self._run(rows)

    async def put_group(self, name: str, vehicles: list[str] | None = None,
                        members: list[str] | None = None) -> None:
        """Create the group, and replace its vehicles and members where given.
        ValueError (nothing changed) if a member is not a user."""
        def put() -> None:
            db = self._db
            ids = []
            for m in members or []:
                r = db.execute("SELECT id FROM users WHERE name=?", (m,)).fetchone()
                if r is None:
                    raise ValueError(f"no user {m!r}")
                ids.append(r[0])
            with transaction(db):
                db.execute("INSERT INTO groups VALUES (?,?) ON CONFLICT DO NOTHING",
                           (name, wall_ms()))
                if vehicles is not None:
                    db.execute("DELETE FROM group_vehicles WHERE group_name=?", (name,))
                    db.executemany("INSERT OR IGNORE INTO group_vehicles VALUES (?,?)",
                                   [(name, v) for v in vehicles])
                if members is not None:
                    db.execute("DELETE FROM group_members WHERE group_name=?", (name,))
                    db.executemany("INSERT OR IGNORE INTO group_members VALUES (?,?)",
                                   [(name, i) for i in ids])

        await self._run(put)

    async def delete_group(self, name: str) -> bool:
        return await self._run(lambda: self._db.execute(
            "DELETE FROM groups WHERE name=?", (name,)).rowcount > 0)

    # --- audit ----------------------------------------------------------------------------

    async def add_audit(self, time_ms: int, user: str, action: str, target: str,
                        detail: dict | None) -> None:
        await self._run(lambda: self._db.execute(
            "INSERT INTO audit (time_ms, user_name, action, target, detail) VALUES (?,?,?,?,?)",
            (time_ms, user, action, target, None if detail is None else json.dumps(detail))))

    async def audit_entries(self, from_ms: int, to_ms: int, limit: int) -> list[dict]:
        """Entries in [from, to), newest first."""
        def rows():
            return [dict(time_ms=a, user=b, action=c, target=d,
                         detail=None if e is None else json.loads(e))
                    for a, b, c, d, e in self._db.execute(
                        "SELECT time_ms, user_name, action, target, detail FROM audit "
                        "WHERE time_ms >= ? AND time_ms < ? ORDER BY time_ms DESC, id DESC "
                        "LIMIT ?", (from_ms, to_ms, limit))]

        return await self._run(rows)
