"""Vehicle owners in the embedded store (sql/sqlite/0027_owners.sql): the cluster's members and
which one owns each vehicle (backend/cluster/owners.py; docs/scaling.md §4). A SQLite file
serves one backend process (a cluster shares PostgreSQL), so every process here is the only
member; the tables behave as in PostgreSQL all the same."""

from __future__ import annotations

from collections.abc import Sequence

from ..rows import StoredAlert
from .db import SqliteDb, transaction

_CLAIM = """INSERT INTO vehicle_owners (vehicle_id, node, connected, since_ms) VALUES (?, ?, 1, ?)
    ON CONFLICT (vehicle_id) DO UPDATE SET node = excluded.node, connected = 1,
        since_ms = excluded.since_ms
    WHERE vehicle_owners.node = excluded.node OR NOT vehicle_owners.connected
        OR vehicle_owners.since_ms <= excluded.since_ms"""
_RELEASE = """UPDATE vehicle_owners SET connected = 0, since_ms = ?3
    WHERE vehicle_id = ?1 AND node = ?2 AND connected"""
_ADOPT = """UPDATE vehicle_owners SET node = ?1, connected = 0,
        since_ms = CASE WHEN connected THEN coalesce(
            (SELECT min(m.renewed_ms, ?2) FROM cluster_members m
             WHERE m.node = vehicle_owners.node), ?2) ELSE since_ms END
    WHERE node <> ?1 AND NOT EXISTS (SELECT 1 FROM cluster_members m
        WHERE m.node = vehicle_owners.node AND m.expires_ms > ?2)"""
_NEVER_OWNED = """INSERT INTO vehicle_owners (vehicle_id, node, connected, since_ms)
    SELECT v.vehicle_id, ?, 0, ? FROM vehicles v WHERE v.revoked_ms IS NULL
    ON CONFLICT (vehicle_id) DO NOTHING"""
_GONE = """DELETE FROM cluster_members WHERE expires_ms <= ? AND NOT EXISTS (
    SELECT 1 FROM vehicle_owners o WHERE o.node = cluster_members.node)"""


class SqliteOwners(SqliteDb):
    async def renew_member(self, node: str, now_ms: int, ttl_ms: int) -> None:
        def renew() -> None:
            with transaction(self._db) as db:
                db.execute("INSERT INTO cluster_members (node, renewed_ms, expires_ms) "
                           "VALUES (?, ?, ?) ON CONFLICT (node) DO UPDATE SET "
                           "renewed_ms = excluded.renewed_ms, expires_ms = excluded.expires_ms",
                           (node, now_ms, now_ms + ttl_ms))

        await self._run(renew)

    async def leave_member(self, node: str, now_ms: int) -> None:
        def leave() -> None:
            with transaction(self._db) as db:
                db.execute("UPDATE cluster_members SET renewed_ms = ?2, expires_ms = ?2 "
                           "WHERE node = ?1", (node, now_ms))

        await self._run(leave)

    async def record_connections(self, node: str,
                                 changes: Sequence[tuple[str, bool, int]]) -> None:
        def record() -> None:
            with transaction(self._db) as db:
                for vehicle, connected, at_ms in changes:
                    db.execute(_CLAIM if connected else _RELEASE, (vehicle, node, at_ms))

        await self._run(record)

    async def owned_vehicles(self, node: str, now_ms: int) -> dict[str, tuple[bool, int]]:
        def owned() -> dict[str, tuple[bool, int]]:
            with transaction(self._db) as db:
                db.execute(_NEVER_OWNED, (node, now_ms))
                db.execute(_ADOPT, (node, now_ms))
                db.execute(_GONE, (now_ms,))
                rows = db.execute("SELECT vehicle_id, connected, since_ms FROM vehicle_owners "
                                  "WHERE node = ?", (node,)).fetchall()
            return {v: (bool(c), s) for v, c, s in rows}

        return await self._run(owned)

    async def save_owned_alerts(self, node: str, changes: Sequence,
                                now_ms: int) -> list[tuple[StoredAlert, bool]]:
        """The check and the save are two calls: the store's one worker thread orders this
        process's calls, and no other process shares the file."""
        def mine() -> set[str]:
            return {r[0] for r in self._db.execute(
                "SELECT vehicle_id FROM vehicle_owners WHERE node = ?", (node,))}

        owned = await self._run(mine)
        kept = [e for e in changes if e.vehicle in owned]
        return await self.save_alerts(kept, [], now_ms) if kept else []  # type: ignore[attr-defined]
