"""Vehicle actions the backend could not apply, in the PostgreSQL store
(sql/postgres/0028_action_letters.sql); the same behaviour as
backend/store/sqlite/action_letters.py."""

from __future__ import annotations

from ..sqlite.action_letters import (
    LETTER_COLUMNS,
    MAX_LETTERS_LISTED,
    letter_row,
    letter_values,
)
from .db import PostgresDb

_COLUMNS = ", ".join(LETTER_COLUMNS)


class PostgresActionLetters(PostgresDb):
    """Mixed into PostgresStore."""

    async def action_letter(self, vehicle_id: str, epoch: int, seq: int) -> dict | None:
        r = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM action_letters WHERE vehicle_id = $1 AND epoch = $2 "
            "AND seq = $3", vehicle_id, epoch, seq)
        return None if r is None else letter_row(tuple(r))

    async def put_action_letter(self, row: dict) -> None:
        await self._pool.execute(
            f"INSERT INTO action_letters ({_COLUMNS}) VALUES "
            f"({', '.join(f'${i}' for i in range(1, len(LETTER_COLUMNS) + 1))}) "
            "ON CONFLICT (vehicle_id, epoch, seq) DO UPDATE SET " + ", ".join(
                f"{c} = excluded.{c}" for c in LETTER_COLUMNS[3:]), *letter_values(row))

    async def drop_action_letter(self, vehicle_id: str, epoch: int, seq: int) -> bool:
        status = await self._pool.execute(
            "DELETE FROM action_letters WHERE vehicle_id = $1 AND epoch = $2 AND seq = $3",
            vehicle_id, epoch, seq)
        return int(status.split()[-1]) > 0

    async def action_letters(self, state: str | None = None, vehicle_id: str | None = None,
                             limit: int = MAX_LETTERS_LISTED) -> list[dict]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM action_letters WHERE ($1::text IS NULL OR state = $1) "
            "AND ($2::text IS NULL OR vehicle_id = $2) "
            "ORDER BY last_ms DESC, vehicle_id, epoch, seq LIMIT $3",
            state, vehicle_id, min(limit, MAX_LETTERS_LISTED))
        return [letter_row(tuple(r)) for r in rows]
