"""The agent's record of the commands it ran (docs/protocol.md §3, "Audit and exactly-once
effects"): committed before a command acts, its answer after, so a repeat is answered from here
and never run twice — also after kill -9 or a power cut. Synchronous; the runner
(agent/command_runner.py) calls it on a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

# How many commands the record keeps: a vehicle sees a few a day; an id the gateway still
# re-sends is days old at most, far inside 4,096.
COMMAND_RECORD_ROWS = 4096


@dataclass(frozen=True, slots=True)
class Record:
    id: int
    name: str
    begun_ms: int
    answered_ms: int | None = None
    ok: bool | None = None
    detail: str = ""
    result: dict | None = None


class CommandLog:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def lookup(self, command_id: int) -> Record | None:
        row = self._db.execute(
            "SELECT id, name, begun_ms, answered_ms, ok, detail, result FROM command_log "
            "WHERE id=?", (command_id,)).fetchone()
        if row is None:
            return None
        return Record(row[0], row[1], row[2], row[3], None if row[4] is None else bool(row[4]),
                      row[5] or "", None if row[6] is None else json.loads(row[6]))

    def begin(self, command_id: int, name: str, args: dict, now_ms: int) -> None:
        """Commit that the command starts (before it acts), trimming the oldest records."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO command_log (id, name, args, begun_ms) VALUES (?, ?, ?, ?)",
                (command_id, name, json.dumps(args), now_ms))
            self._db.execute(
                "DELETE FROM command_log WHERE id <= (SELECT id FROM command_log "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)", (COMMAND_RECORD_ROWS,))

    def finish(self, command_id: int, ok: bool, detail: str, result: dict | None,
               now_ms: int) -> None:
        self._db.execute(
            "UPDATE command_log SET answered_ms=?, ok=?, detail=?, result=? WHERE id=?",
            (now_ms, int(ok), detail, None if result is None else json.dumps(result),
             command_id))

    def begun(self, name: str) -> list[Record]:
        """Commands of `name` begun and never answered (e.g. a restart under way)."""
        return [self.lookup(r[0]) for r in self._db.execute(
            "SELECT id FROM command_log WHERE name=? AND answered_ms IS NULL ORDER BY id",
            (name,))]
