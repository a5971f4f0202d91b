"""Downlink commands and the vehicles' status reports in the PostgreSQL store (the
`commands` and `vehicle_status` tables)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from geostream.clock import wall_ms

from ..base import StoredCommand, command_id_floor
from ..coalesce import Coalesced, CoalescedPuts
from .db import EPOCH_MS as _EPOCH_MS
from .db import MS as _MS
from .db import PostgresDb
from .db import ms_of as _ms

_COMMAND_LOCK = 0x666C65657463  # advisory lock id serialising command id allocation
_COMMAND_COLUMNS = (f"id, vehicle_id, name, args, {_EPOCH_MS.format('created_at')}, "
                    f"sent_count, {_EPOCH_MS.format('last_sent_at')}, "
                    f"{_EPOCH_MS.format('answered_at')}, ok, detail, result")
# Vehicles one status (or command list) statement writes, or one pending-commands query asks
# for, at most: each vehicle reports its status every 30 s, and its commands and the question
# what is pending at every hello, so 10,000 vehicles made ~333 statements a second and 20,000
# at a fleet's reconnect, each a pool connection (a commit) and ~140 µs of the gateway loop's
# CPU (measured, docs/benchmarks.md "PostgreSQL, session 12"); 1,000 rows are a few hundred KB.
PUT_BATCH_MAX = 1000
_PUT_STATUS = f"""INSERT INTO vehicle_status (vehicle_id, time, status)
    SELECT v, {_MS.format('t')}, s::jsonb FROM unnest($1::text[], $2::bigint[], $3::text[])
        AS u(v, t, s)
    ON CONFLICT (vehicle_id) DO UPDATE SET time = excluded.time, status = excluded.status"""
_PUT_COMMANDS = f"""INSERT INTO vehicle_commands (vehicle_id, names, time)
    SELECT v, n::jsonb, {_MS.format('t')} FROM unnest($1::text[], $2::text[], $3::bigint[])
        AS u(v, n, t)
    ON CONFLICT (vehicle_id) DO UPDATE SET names = excluded.names, time = excluded.time"""


class PostgresCommands(PostgresDb):
    _statuses: CoalescedPuts[str, tuple[int, str]]
    _command_lists: CoalescedPuts[str, tuple[str, int]]
    _pending: Coalesced[str, list[StoredCommand]]

    def _init_commands(self) -> None:
        """Status reports and command lists of vehicles reporting meanwhile share a statement,
        and the pending commands asked for meanwhile (every hello asks) share a query
        (coalesce.py)."""
        self._statuses = CoalescedPuts(self._put_statuses, PUT_BATCH_MAX)
        self._command_lists = CoalescedPuts(self._put_command_lists, PUT_BATCH_MAX)
        self._pending = Coalesced(self._pending_of, PUT_BATCH_MAX)

    async def _put_statuses(self, items: list[tuple[str, tuple[int, str]]]) -> None:
        await self._pool.execute(_PUT_STATUS, [v for v, _ in items],
                                 [t for _, (t, _) in items], [s for _, (_, s) in items])

    async def _put_command_lists(self, items: list[tuple[str, tuple[str, int]]]) -> None:
        await self._pool.execute(_PUT_COMMANDS, [v for v, _ in items],
                                 [n for _, (n, _) in items], [t for _, (_, t) in items])
    async def add_command(self, vehicle_id: str, name: str, args: dict,
                          request_key: str | None = None) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            # backends sharing the database take turns, so max(id) + 1 cannot collide, and a
            # repeated request (same key) finds the first one's command under the same lock
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _COMMAND_LOCK)
            if request_key is not None:
                known = await conn.fetchval(
                    "SELECT id FROM commands WHERE vehicle_id = $1 AND request_key = $2",
                    vehicle_id, request_key)
                if known is not None:
                    return known
            now = wall_ms()
            key = ", request_key" if request_key is not None else ""  # (column of 0014)
            return await conn.fetchval(
                f"INSERT INTO commands (id, vehicle_id, name, args, created_at{key}) "
                f"SELECT greatest($1::bigint, coalesce(max(id), 0) + 1), $2, $3, $4::jsonb, "
                f"{_MS.format('$5::bigint')}{', $6' if key else ''} FROM commands RETURNING id",
                command_id_floor(now), vehicle_id, name, json.dumps(args), now,
                *([request_key] if key else []))

    async def pending_commands(self, vehicle_id: str) -> list[StoredCommand]:
        return await self._pending.get(vehicle_id) or []

    async def _pending_of(self, vehicles: Sequence[str]) -> dict[str, list[StoredCommand]]:
        out: dict[str, list[StoredCommand]] = {}
        for r in await self._pool.fetch(
                f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE vehicle_id = ANY($1::text[]) "
                "AND answered_at IS NULL ORDER BY id", vehicles):
            out.setdefault(r[1], []).append(StoredCommand.from_row(r))
        return out

    async def commands_sent(self, ids: list[int], now_ms: int) -> None:
        await self._pool.execute(
            "UPDATE commands SET sent_count = sent_count + 1, "
            f"last_sent_at = {_MS.format('$2::bigint')} WHERE id = ANY($1::bigint[])",
            ids, now_ms)

    async def answer_command(self, vehicle_id: str, command_id: int, ok: bool, detail: str,
                             now_ms: int, result: dict | None = None) -> bool:
        status = await self._pool.execute(
            f"UPDATE commands SET answered_at = {_MS.format('$1::bigint')}, ok = $2, "
            "detail = $3, result = $6::jsonb "
            "WHERE id = $4 AND vehicle_id = $5 AND answered_at IS NULL",
            now_ms, ok, detail, command_id, vehicle_id,
            None if result is None else json.dumps(result))
        return status != "UPDATE 0"

    async def save_vehicle_commands(self, vehicle_id: str, names: list[str],
                                    now_ms: int) -> None:
        await self._command_lists.put(vehicle_id, (json.dumps(names), now_ms))

    async def vehicle_commands(self, vehicle_id: str) -> list[str] | None:
        names = await self._pool.fetchval(
            "SELECT names FROM vehicle_commands WHERE vehicle_id = $1", vehicle_id)
        return None if names is None else json.loads(names)

    async def commands_of(self, vehicle_id: str, limit: int) -> list[StoredCommand]:
        rows = await self._pool.fetch(
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE vehicle_id = $1 "
            "ORDER BY id DESC LIMIT $2", vehicle_id, limit)
        return [StoredCommand.from_row(r) for r in rows]

    async def save_vehicle_status(self, vehicle_id: str, status: dict, now_ms: int) -> None:
        await self._statuses.put(vehicle_id, (now_ms, json.dumps(status)))

    async def command(self, command_id: int) -> StoredCommand | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = $1", command_id)
        return None if row is None else StoredCommand.from_row(row)

    async def vehicle_statuses(self) -> dict[str, dict]:
        """{vehicle: the agent's last status report, with its `time_ms`}."""
        rows = await self._pool.fetch("SELECT vehicle_id, time, status FROM vehicle_status")
        return {r[0]: {**json.loads(r[2]), "time_ms": _ms(r[1])} for r in rows}
