"""Vehicle actions the backend could not apply, in the SQLite store
(sql/sqlite/0028_action_letters.sql, docs/operations.md "Dead letters of vehicle actions")."""

from __future__ import annotations

import json

from .db import SqliteDb, transaction

LETTER_COLUMNS = ("vehicle_id", "epoch", "seq", "key", "kind", "action", "taken_ms", "state",
                  "error", "failures", "first_ms", "last_ms", "replayed_ms", "outcome")
# What one listing returns at most: an admin's page, not an export.
MAX_LETTERS_LISTED = 1000


def letter_row(values) -> dict:
    """A stored row as a dict, the action decoded."""
    row = dict(zip(LETTER_COLUMNS, values, strict=True))
    row["action"] = json.loads(row["action"])
    return row


def letter_values(row: dict) -> list:
    return [json.dumps(row["action"], sort_keys=True) if c == "action" else row.get(c)
            for c in LETTER_COLUMNS]


class SqliteActionLetters(SqliteDb):
    """Mixed into SqliteStore."""

    async def action_letter(self, vehicle_id: str, epoch: int, seq: int) -> dict | None:
        """The letter of one `act` reading, or None."""
        def one():
            r = self._db.execute(
                f"SELECT {', '.join(LETTER_COLUMNS)} FROM action_letters WHERE vehicle_id = ? "
                "AND epoch = ? AND seq = ?", (vehicle_id, epoch, seq)).fetchone()
            return None if r is None else letter_row(r)

        return await self._run(one)

    async def put_action_letter(self, row: dict) -> None:
        """Insert or replace the letter of one reading (its vehicle, epoch and seq)."""
        def run():
            with transaction(self._db):
                self._db.execute(
                    f"INSERT INTO action_letters ({', '.join(LETTER_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(LETTER_COLUMNS))}) ON CONFLICT (vehicle_id, epoch, "
                    "seq) DO UPDATE SET " + ", ".join(
                        f"{c} = excluded.{c}" for c in LETTER_COLUMNS[3:]),
                    letter_values(row))

        await self._run(run)

    async def drop_action_letter(self, vehicle_id: str, epoch: int, seq: int) -> bool:
        """Forget a letter (its action was applied after all); True if there was one."""
        def run():
            return self._db.execute(
                "DELETE FROM action_letters WHERE vehicle_id = ? AND epoch = ? AND seq = ?",
                (vehicle_id, epoch, seq)).rowcount > 0

        return await self._run(run)

    async def action_letters(self, state: str | None = None, vehicle_id: str | None = None,
                             limit: int = MAX_LETTERS_LISTED) -> list[dict]:
        """Letters, the latest failure first; filtered by state and vehicle when given."""
        def rows():
            return [letter_row(r) for r in self._db.execute(
                f"SELECT {', '.join(LETTER_COLUMNS)} FROM action_letters WHERE "
                "(? IS NULL OR state = ?) AND (? IS NULL OR vehicle_id = ?) "
                "ORDER BY last_ms DESC, vehicle_id, epoch, seq LIMIT ?",
                (state, state, vehicle_id, vehicle_id, min(limit, MAX_LETTERS_LISTED)))]

        return await self._run(rows)
