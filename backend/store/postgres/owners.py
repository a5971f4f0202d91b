"""Vehicle owners in the PostgreSQL store (sql/postgres/0027_owners.sql): the cluster's
members and which one owns each vehicle (backend/cluster/owners.py; docs/scaling.md §4).

Races are settled by row locks: a claim, an adoption and an owner's fenced alert save all
lock the vehicle's row, so whichever commits second sees the first (an adoption re-checks its
condition on the row it waited for; an alert save of a process that lost the vehicle writes
nothing for it)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..rows import StoredAlert
from .alerts import _UPSERT, _alert
from .db import PostgresDb

# A claim wins over a row of the same node, a disconnected one, or an older connection.
_CLAIM = """INSERT INTO vehicle_owners AS o (vehicle_id, node, connected, since_ms)
    VALUES ($1, $2, true, $3)
    ON CONFLICT (vehicle_id) DO UPDATE SET node = excluded.node, connected = true,
        since_ms = excluded.since_ms
    WHERE o.node = excluded.node OR NOT o.connected OR o.since_ms <= excluded.since_ms"""
_RELEASE = """UPDATE vehicle_owners SET connected = false, since_ms = $3
    WHERE vehicle_id = $1 AND node = $2 AND connected"""
# Rows whose node is no live member: the adopter owns them, disconnected since they were last
# known connected (a dead member's last renewal) or since whenever their row says.
_ADOPT = """UPDATE vehicle_owners o SET node = $1, connected = false,
        since_ms = CASE WHEN o.connected THEN coalesce(
            (SELECT least(m.renewed_ms, $2) FROM cluster_members m WHERE m.node = o.node), $2)
            ELSE o.since_ms END
    WHERE o.node <> $1 AND NOT EXISTS (
        SELECT 1 FROM cluster_members m WHERE m.node = o.node AND m.expires_ms > $2)"""
_NEVER_OWNED = """INSERT INTO vehicle_owners (vehicle_id, node, connected, since_ms)
    SELECT v.vehicle_id, $1, false, $2 FROM vehicles v
    WHERE v.revoked_at IS NULL AND NOT EXISTS (
        SELECT 1 FROM vehicle_owners o WHERE o.vehicle_id = v.vehicle_id)
    ON CONFLICT (vehicle_id) DO NOTHING"""
_GONE = """DELETE FROM cluster_members m WHERE m.expires_ms <= $1 AND NOT EXISTS (
    SELECT 1 FROM vehicle_owners o WHERE o.node = m.node)"""


class PostgresOwners(PostgresDb):
    async def renew_member(self, node: str, now_ms: int, ttl_ms: int) -> None:
        await self._pool.execute(
            "INSERT INTO cluster_members (node, renewed_ms, expires_ms) VALUES ($1, $2, $3) "
            "ON CONFLICT (node) DO UPDATE SET renewed_ms = excluded.renewed_ms, "
            "expires_ms = excluded.expires_ms", node, now_ms, now_ms + ttl_ms)

    async def leave_member(self, node: str, now_ms: int) -> None:
        await self._pool.execute("UPDATE cluster_members SET renewed_ms = $2, expires_ms = $2 "
                                 "WHERE node = $1", node, now_ms)

    async def record_connections(self, node: str,
                                 changes: Sequence[tuple[str, bool, int]]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            for vehicle, connected, at_ms in changes:
                await conn.execute(_CLAIM if connected else _RELEASE, vehicle, node, at_ms)

    async def owned_vehicles(self, node: str, now_ms: int) -> dict[str, tuple[bool, int]]:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(_NEVER_OWNED, node, now_ms)
            async with conn.transaction():
                await conn.execute(_ADOPT, node, now_ms)
                await conn.execute(_GONE, now_ms)
            rows = await conn.fetch("SELECT vehicle_id, connected, since_ms FROM vehicle_owners "
                                    "WHERE node = $1", node)
        return {r["vehicle_id"]: (r["connected"], r["since_ms"]) for r in rows}

    async def save_owned_alerts(self, node: str, changes: Sequence,
                                now_ms: int) -> list[tuple[StoredAlert, bool]]:
        out: list[tuple[StoredAlert, bool]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            mine = {r[0] for r in await conn.fetch(
                "SELECT vehicle_id FROM vehicle_owners WHERE vehicle_id = ANY($1::text[]) "
                "AND node = $2 ORDER BY vehicle_id FOR UPDATE",
                sorted({e.vehicle for e in changes}), node)}
            for e in changes:
                if e.vehicle in mine:
                    r = await conn.fetchrow(_UPSERT, *e.key, e.end_ms, e.peak, e.state, e.lat,
                                            e.lon, json.dumps(e.detail, default=str),
                                            e.decided_ms)
                    out.append((_alert(r), r["inserted"]))
        return out
