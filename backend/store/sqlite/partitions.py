"""Partition upkeep in the embedded store: none. SQLite keeps readings in one table (no
retention yet); `maintain` answers as the PostgreSQL store's does, with nothing done."""

from __future__ import annotations

from .db import SqliteDb


class SqlitePartitions(SqliteDb):
    async def maintain(self, now_ms: int | None = None) -> dict:
        return {"created": 0, "dropped": []}  # one table, no partitions
