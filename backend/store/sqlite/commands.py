"""Downlink commands and agent status reports in the embedded store (the SqliteStore mixin
that owns the `commands` and `vehicle_status` tables)."""

from __future__ import annotations

import json

from geostream.clock import wall_ms

from ..base import StoredCommand, command_id_floor
from .db import SqliteDb

_COMMAND_COLUMNS = ("id, vehicle_id, name, args, created_ms, sent_count, last_sent_ms, "
                    "answered_ms, ok, detail, result")


class SqliteCommands(SqliteDb):

    async def add_command(self, vehicle_id: str, name: str, args: dict,
                          request_key: str | None = None) -> int:
        def add() -> int:
            if request_key is not None:  # a repeated request: the first one's command
                known = self._db.execute(
                    "SELECT id FROM commands WHERE vehicle_id=? AND request_key=?",
                    (vehicle_id, request_key)).fetchone()
                if known is not None:
                    return known[0]
            now = wall_ms()
            key = ", request_key" if request_key is not None else ""  # (column of 0014)
            # one statement on the store's only connection: the max() cannot race
            return self._db.execute(
                f"INSERT INTO commands (id, vehicle_id, name, args, created_ms{key}) "
                f"SELECT max(?, coalesce(max(id), 0) + 1), ?, ?, ?, ?{', ?' if key else ''} "
                "FROM commands RETURNING id",
                (command_id_floor(now), vehicle_id, name, json.dumps(args), now,
                 *([request_key] if key else []))).fetchall()[0][0]

        return await self._run(add)

    async def pending_commands(self, vehicle_id: str) -> list[StoredCommand]:
        def rows():
            return [StoredCommand.from_row(r) for r in self._db.execute(
                f"SELECT {_COMMAND_COLUMNS} FROM commands "
                "WHERE vehicle_id=? AND answered_ms IS NULL ORDER BY id", (vehicle_id,))]

        return await self._run(rows)

    async def commands_sent(self, ids: list[int], now_ms: int) -> None:
        def sent() -> None:
            self._db.executemany(
                "UPDATE commands SET sent_count=sent_count+1, last_sent_ms=? WHERE id=?",
                [(now_ms, i) for i in ids])

        await self._run(sent)

    async def answer_command(self, vehicle_id: str, command_id: int, ok: bool, detail: str,
                             now_ms: int, result: dict | None = None) -> bool:
        def answer() -> bool:
            return self._db.execute(
                "UPDATE commands SET answered_ms=?, ok=?, detail=?, result=? "
                "WHERE id=? AND vehicle_id=? AND answered_ms IS NULL",
                (now_ms, int(ok), detail, None if result is None else json.dumps(result),
                 command_id, vehicle_id)).rowcount > 0

        return await self._run(answer)

    async def save_vehicle_commands(self, vehicle_id: str, names: list[str],
                                    now_ms: int) -> None:
        def save() -> None:
            self._db.execute(
                "INSERT INTO vehicle_commands (vehicle_id, names, time_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (vehicle_id) DO UPDATE SET names=excluded.names, "
                "time_ms=excluded.time_ms", (vehicle_id, json.dumps(names), now_ms))

        await self._run(save)

    async def vehicle_commands(self, vehicle_id: str) -> list[str] | None:
        def row():
            r = self._db.execute("SELECT names FROM vehicle_commands WHERE vehicle_id=?",
                                 (vehicle_id,)).fetchone()
            return None if r is None else json.loads(r[0])

        return await self._run(row)

    async def save_vehicle_status(self, vehicle_id: str, status: dict, now_ms: int) -> None:
        def save() -> None:
            self._db.execute(
                "INSERT INTO vehicle_status (vehicle_id, time_ms, status) VALUES (?, ?, ?) "
                "ON CONFLICT (vehicle_id) DO UPDATE SET time_ms=excluded.time_ms, "
                "status=excluded.status", (vehicle_id, now_ms, json.dumps(status)))

        await self._run(save)

    async def command(self, command_id: int) -> StoredCommand | None:
        def row():
            r = self._db.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id=?",
                                 (command_id,)).fetchone()
            return None if r is None else StoredCommand.from_row(r)

        return await self._run(row)

    async def commands_of(self, vehicle_id: str, limit: int) -> list[StoredCommand]:
        def rows():
            return [StoredCommand.from_row(r) for r in self._db.execute(
                f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE vehicle_id=? "
                "ORDER BY id DESC LIMIT ?", (vehicle_id, limit))]

        return await self._run(rows)

    async def vehicle_statuses(self) -> dict[str, dict]:
        """{vehicle: the agent's last status report, with its `time_ms`}."""
        def rows():
            return {v: {**json.loads(s), "time_ms": t} for v, t, s in self._db.execute(
                "SELECT vehicle_id, time_ms, status FROM vehicle_status")}

        return await self._run(rows)
