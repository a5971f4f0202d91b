"""The driver app's tables in the PostgreSQL store (sql/postgres/0019_driver.sql); the same
behaviour as backend/store/sqlite/driver.py. Actions and messages are
written under a transaction-scoped advisory lock (actions one, messages another), so `seq`
order is commit order: a reader following the seq cursor never skips a row committed late.
Driver actions are a few per stop, so one lock for the whole fleet costs nothing measurable."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ...dispatch import codec
from ...dispatch.model import Route, Transition
from ...driver.storage import (
    ACTION_COLUMNS,
    MAX_PAGE,
    MESSAGE_COLUMNS,
    SHIFT_MARGIN_MS,
    SHIFT_STATUSES,
    SeqTaken,
    action_from_row,
    message_from_row,
)
from .db import PostgresDb

_ACTION_SELECT = ", ".join(c if c != "body" else "body::text" for c in ACTION_COLUMNS)
_ACTION_INSERT = ", ".join(ACTION_COLUMNS[1:])
_MESSAGE_INSERT = ", ".join(MESSAGE_COLUMNS[1:])
_MESSAGES_LOCK = 0x666C6D7367  # advisory lock id ("flmsg") serialising message inserts
_ACTIONS_LOCK = 0x666C616374  # ("flact") serialising action inserts (seq = commit order)
_FILE_COLUMNS = ("id", "driver_id", "vehicle_id", "job_id", "kind", "media_type", "data",
                 "created_ms")


class PostgresDriver(PostgresDb):
    """Mixed into PostgresStore (uses its asyncpg pool)."""

    async def driver_of(self, vehicle_id: str, at_ms: int) -> str | None:
        """As SqliteDriver.driver_of."""
        return await self._pool.fetchval(
            "SELECT body->>'driver_id' FROM routes WHERE vehicle_id = $1 "
            "AND status = ANY($2::text[]) AND shift_start_ms <= $3 AND $3 < shift_end_ms "
            "AND body->>'driver_id' IS NOT NULL "
            'ORDER BY shift_start_ms DESC, id COLLATE "C" LIMIT 1',
            vehicle_id, list(SHIFT_STATUSES), at_ms)

    async def driver_shift(self, driver_id: str, at_ms: int) -> Route | None:
        """As SqliteDriver.driver_shift."""
        body = await self._pool.fetchval(
            "SELECT body::text FROM routes WHERE status = ANY($1::text[]) "
            "AND body->>'driver_id' = $2 AND shift_start_ms - $3 <= $4 "
            "AND $4 < shift_end_ms + $3 "
            "ORDER BY status = 'active' DESC, shift_start_ms DESC, id COLLATE \"C\" LIMIT 1",
            list(SHIFT_STATUSES), driver_id, SHIFT_MARGIN_MS, at_ms)
        return None if body is None else codec.route_from_dict(json.loads(body))

    async def driver_action(self, key: str) -> dict | None:
        r = await self._pool.fetchrow(
            f"SELECT {_ACTION_SELECT} FROM driver_actions WHERE key = $1", key)
        return None if r is None else action_from_row(r)

    async def device_last_seq(self, device_id: str) -> int | None:
        return await self._pool.fetchval(
            "SELECT max(device_seq) FROM driver_actions WHERE device_id = $1", device_id)

    async def add_driver_action(self, row: dict, transitions: Sequence[Transition] = (),
                                message: dict | None = None) -> tuple[dict, bool]:
        """As SqliteDriver.add_driver_action."""
        values = [json.dumps(row["body"], sort_keys=True) if c == "body" else row[c]
                  for c in ACTION_COLUMNS[1:]]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ACTIONS_LOCK)
            r = await conn.fetchrow(
                f"SELECT {_ACTION_SELECT} FROM driver_actions WHERE key = $1", row["key"])
            if r is not None:
                return action_from_row(r), False
            if await conn.fetchval("SELECT 1 FROM driver_actions WHERE device_id = $1 "
                                   "AND device_seq = $2", row["device_id"], row["device_seq"]):
                raise SeqTaken(row["device_id"], row["device_seq"])
            await self._record_transitions(conn, list(transitions))  # type: ignore[attr-defined]
            marks = ", ".join(f"${i}" + ("::jsonb" if c == "body" else "")
                              for i, c in enumerate(ACTION_COLUMNS[1:], 1))
            seq = await conn.fetchval(
                f"INSERT INTO driver_actions ({_ACTION_INSERT}) VALUES ({marks}) RETURNING seq",
                *values)
            if message is not None:
                await self._insert_message(conn, message)
            return {**row, "seq": seq}, True

    async def driver_actions(self, driver_id: str | None = None, job_id: str | None = None,
                             conflicts: bool = False, vehicles: frozenset[str] | None = None,
                             after: int = 0, limit: int = MAX_PAGE) -> list[dict]:
        """As SqliteDriver.driver_actions."""
        where: list[str] = ["seq > $1"]
        args: list[object] = [after]
        if driver_id is not None:
            args.append(driver_id)
            where.append(f"driver_id = ${len(args)}")
        if job_id is not None:
            args.append(job_id)
            where.append(f"job_id = ${len(args)}")
        if conflicts:
            where.append("outcome = 'conflict'")
        if vehicles is not None:
            args.append(sorted(vehicles))
            where.append(f"vehicle_id = ANY(${len(args)}::text[])")
        args.append(min(limit, MAX_PAGE))
        rows = await self._pool.fetch(
            f"SELECT {_ACTION_SELECT} FROM driver_actions WHERE {' AND '.join(where)} "
            f"ORDER BY seq LIMIT ${len(args)}", *args)
        return [action_from_row(r) for r in rows]

    async def _insert_message(self, conn, m: dict) -> bool:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MESSAGES_LOCK)
        marks = ", ".join(f"${i}" for i in range(1, len(MESSAGE_COLUMNS)))
        return bool(await conn.fetchval(
            f"INSERT INTO driver_messages ({_MESSAGE_INSERT}) VALUES ({marks}) "
            "ON CONFLICT (id) DO NOTHING RETURNING 1", *[m[c] for c in MESSAGE_COLUMNS[1:]]))

    async def add_driver_message(self, message: dict) -> tuple[dict, bool]:
        """As SqliteDriver.add_driver_message."""
        async with self._pool.acquire() as conn, conn.transaction():
            new = await self._insert_message(conn, message)
            r = await conn.fetchrow(f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM driver_messages "
                                    "WHERE id = $1", message["id"])
            return message_from_row(r), new

    async def driver_message(self, message_id: str) -> dict | None:
        r = await self._pool.fetchrow(f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM driver_messages "
                                      "WHERE id = $1", message_id)
        return None if r is None else message_from_row(r)

    async def driver_messages(self, driver_id: str | None = None,
                              vehicle_id: str | None = None, after: int = 0,
                              limit: int = MAX_PAGE) -> list[dict]:
        """As SqliteDriver.driver_messages."""
        where: list[str] = ["seq > $1"]
        args: list[object] = [after]
        if driver_id is not None:
            args.append(driver_id)
            where.append(f"driver_id = ${len(args)}")
        if vehicle_id is not None:
            args.append(vehicle_id)
            where.append(f"vehicle_id = ${len(args)}")
        args.append(min(limit, MAX_PAGE))
        rows = await self._pool.fetch(
            f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM driver_messages WHERE "
            f"{' AND '.join(where)} ORDER BY seq LIMIT ${len(args)}", *args)
        return [message_from_row(r) for r in rows]

    async def put_driver_file(self, f: dict) -> bool:
        """As SqliteDriver.put_driver_file."""
        return bool(await self._pool.fetchval(
            f"INSERT INTO driver_files ({', '.join(_FILE_COLUMNS)}) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING 1",
            *[f[c] for c in _FILE_COLUMNS]))

    async def driver_file(self, file_id: str) -> dict | None:
        r = await self._pool.fetchrow(
            f"SELECT {', '.join(_FILE_COLUMNS)} FROM driver_files WHERE id = $1", file_id)
        return None if r is None else dict(zip(_FILE_COLUMNS, r, strict=True)) | {
            "data": bytes(r[6])}

    async def driver_file_count(self, driver_id: str, job_id: str) -> int:
        return await self._pool.fetchval(
            "SELECT count(*) FROM driver_files WHERE driver_id = $1 AND job_id = $2",
            driver_id, job_id)

    async def driver_files_exist(self, file_ids: Sequence[str], driver_id: str) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT id FROM driver_files WHERE driver_id = $1 AND id = ANY($2::text[])",
            driver_id, list(file_ids))
        return {r[0] for r in rows}
