"""The driver app's tables in the SQLite store (sql/sqlite/0019_driver.sql): who drives which
vehicle when, driver actions (applied exactly once with their job transition, in one
transaction), messages and proof-of-delivery images."""

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
from .db import SqliteDb, transaction

_SHIFTS = f"status IN ({','.join(repr(s) for s in SHIFT_STATUSES)})"
_ACTION_INSERT = ", ".join(ACTION_COLUMNS[1:])
_MESSAGE_INSERT = ", ".join(MESSAGE_COLUMNS[1:])
# A condition of `_page` that takes no argument.
_NO_ARG = object()


class SqliteDriver(SqliteDb):
    """Mixed into SqliteStore: every call runs on the store's one worker thread."""

    # --- shifts -----------------------------------------------------------------------------

    async def driver_of(self, vehicle_id: str, at_ms: int) -> str | None:
        """Who drives `vehicle_id` at `at_ms`: the driver of its dispatched, active or done
        route whose shift holds that time (the latest shift if several do), else None."""
        def row():
            r = self._db.execute(
                f"SELECT json_extract(body, '$.driver_id') FROM routes WHERE vehicle_id = ? "
                f"AND {_SHIFTS} AND shift_start_ms <= ? AND ? < shift_end_ms "
                "AND json_extract(body, '$.driver_id') IS NOT NULL "
                "ORDER BY shift_start_ms DESC, id LIMIT 1", (vehicle_id, at_ms, at_ms)).fetchone()
            return None if r is None else r[0]

        return await self._run(row)

    async def driver_shift(self, driver_id: str, at_ms: int) -> Route | None:
        """The route of the driver's shift at `at_ms` (within SHIFT_MARGIN_MS of its shift):
        an active one first, then the latest to start."""
        def row():
            r = self._db.execute(
                f"SELECT body FROM routes WHERE {_SHIFTS} "
                "AND json_extract(body, '$.driver_id') = ? "
                "AND shift_start_ms - ? <= ? AND ? < shift_end_ms + ? "
                "ORDER BY status = 'active' DESC, shift_start_ms DESC, id LIMIT 1",
                (driver_id, SHIFT_MARGIN_MS, at_ms, at_ms, SHIFT_MARGIN_MS)).fetchone()
            return None if r is None else codec.route_from_dict(json.loads(r[0]))

        return await self._run(row)

    # --- actions ----------------------------------------------------------------------------

    async def driver_action(self, key: str) -> dict | None:
        def row():
            r = self._db.execute(f"SELECT {', '.join(ACTION_COLUMNS)} FROM driver_actions "
                                 "WHERE key = ?", (key,)).fetchone()
            return None if r is None else action_from_row(r)

        return await self._run(row)

    async def device_last_seq(self, device_id: str) -> int | None:
        def row():
            return self._db.execute("SELECT max(device_seq) FROM driver_actions "
                                    "WHERE device_id = ?", (device_id,)).fetchone()[0]

        return await self._run(row)

    async def add_driver_action(self, row: dict, transitions: Sequence[Transition] = (),
                                message: dict | None = None) -> tuple[dict, bool]:
        """Store an action with the job transitions and the message it makes, in one
        transaction: (the stored row, True) — or, if its key is stored already (a re-send
        racing this one), (that row, False) with nothing written. SeqTaken if the device's
        sequence number belongs to another key; StaleState (nothing written) if a transition
        does not start from its job's stored state."""
        values = [row[c] if c != "body" else json.dumps(row["body"], sort_keys=True)
                  for c in ACTION_COLUMNS[1:]]

        def run():
            with transaction(self._db) as db:
                r = db.execute(f"SELECT {', '.join(ACTION_COLUMNS)} FROM driver_actions "
                               "WHERE key = ?", (row["key"],)).fetchone()
                if r is not None:
                    return action_from_row(r), False
                if db.execute("SELECT 1 FROM driver_actions WHERE device_id = ? "
                              "AND device_seq = ?", (row["device_id"], row["device_seq"])
                              ).fetchone():
                    raise SeqTaken(row["device_id"], row["device_seq"])
                self._record_transitions(db, list(transitions))  # type: ignore[attr-defined]
                cur = db.execute(f"INSERT INTO driver_actions ({_ACTION_INSERT}) VALUES "
                                 f"({','.join('?' * len(values))})", values)
                if message is not None:
                    self._insert_message(db, message)
                return {**row, "seq": cur.lastrowid}, True

        return await self._run(run)

    async def driver_actions(self, driver_id: str | None = None, job_id: str | None = None,
                             conflicts: bool = False, vehicles: frozenset[str] | None = None,
                             after: int = 0, limit: int = MAX_PAGE) -> list[dict]:
        """Stored actions in the order applied, after seq `after`: one driver's, one job's,
        only conflicts, only those of `vehicles` (None: all)."""
        where: dict[str, object] = {"driver_id = ?": driver_id, "job_id = ?": job_id}
        if conflicts:
            where["outcome = 'conflict'"] = _NO_ARG
        if vehicles is not None:
            where["vehicle_id IN (SELECT value FROM json_each(?))"] = json.dumps(sorted(vehicles))
        return await self._page("driver_actions", ACTION_COLUMNS, action_from_row, where,
                                after, limit)

    async def _page(self, table: str, columns: Sequence[str], from_row, where: dict,
                    after: int, limit: int) -> list[dict]:
        """Rows of `table` after seq `after`, in seq order, at most MAX_PAGE: `where` maps each
        condition to its argument (None: condition left out; _NO_ARG: a condition without
        one)."""
        conds, args = ["seq > ?"], [after]
        for cond, arg in where.items():
            if arg is None:
                continue
            conds.append(cond)
            if arg is not _NO_ARG:
                args.append(arg)
        sql = (f"SELECT {', '.join(columns)} FROM {table} WHERE {' AND '.join(conds)} "
               "ORDER BY seq LIMIT ?")

        def rows():
            return [from_row(r) for r in self._db.execute(sql, (*args, min(limit, MAX_PAGE)))]

        return await self._run(rows)

    # --- messages ---------------------------------------------------------------------------

    @staticmethod
    def _insert_message(db, m: dict) -> bool:
        cur = db.execute(f"INSERT INTO driver_messages ({_MESSAGE_INSERT}) VALUES "
                         f"({','.join('?' * (len(MESSAGE_COLUMNS) - 1))}) "
                         "ON CONFLICT (id) DO NOTHING", [m[c] for c in MESSAGE_COLUMNS[1:]])
        return cur.rowcount > 0

    async def add_driver_message(self, message: dict) -> tuple[dict, bool]:
        """Store a message (its `id` makes it idempotent): (the stored row, True if new)."""
        def run():
            with transaction(self._db) as db:
                new = self._insert_message(db, message)
                r = db.execute(f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM driver_messages "
                               "WHERE id = ?", (message["id"],)).fetchone()
                return message_from_row(r), new

        return await self._run(run)

    async def driver_message(self, message_id: str) -> dict | None:
        def row():
            r = self._db.execute(f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM driver_messages "
                                 "WHERE id = ?", (message_id,)).fetchone()
            return None if r is None else message_from_row(r)

        return await self._run(row)

    async def driver_messages(self, driver_id: str | None = None,
                              vehicle_id: str | None = None, after: int = 0,
                              limit: int = MAX_PAGE) -> list[dict]:
        """Messages after seq `after`, oldest first: a driver's or a vehicle's (either)."""
        return await self._page("driver_messages", MESSAGE_COLUMNS, message_from_row,
                                {"driver_id = ?": driver_id, "vehicle_id = ?": vehicle_id},
                                after, limit)

    # --- proof-of-delivery images -----------------------------------------------------------

    async def put_driver_file(self, f: dict) -> bool:
        """Store an image (idempotent by id); True if it was new. Committed on return."""
        def run():
            return self._db.execute(
                "INSERT INTO driver_files (id, driver_id, vehicle_id, job_id, kind, media_type, "
                "data, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (f["id"], f["driver_id"], f["vehicle_id"], f["job_id"], f["kind"],
                 f["media_type"], f["data"], f["created_ms"])).rowcount > 0

        return await self._run(run)

    async def driver_file(self, file_id: str) -> dict | None:
        def row():
            r = self._db.execute(
                "SELECT id, driver_id, vehicle_id, job_id, kind, media_type, data, created_ms "
                "FROM driver_files WHERE id = ?", (file_id,)).fetchone()
            return None if r is None else dict(zip(
                ("id", "driver_id", "vehicle_id", "job_id", "kind", "media_type", "data",
                 "created_ms"), r, strict=True)) | {"data": bytes(r[6])}

        return await self._run(row)

    async def driver_file_count(self, driver_id: str, job_id: str) -> int:
        def row():
            return self._db.execute("SELECT count(*) FROM driver_files WHERE driver_id = ? "
                                    "AND job_id = ?", (driver_id, job_id)).fetchone()[0]

        return await self._run(row)

    async def driver_files_exist(self, file_ids: Sequence[str], driver_id: str) -> set[str]:
        """Which of `file_ids` are stored images of this driver."""
        def rows():
            return {r[0] for r in self._db.execute(
                "SELECT id FROM driver_files WHERE driver_id = ? AND id IN "
                "(SELECT value FROM json_each(?))", (driver_id, json.dumps(list(file_ids))))}

        return await self._run(rows)
