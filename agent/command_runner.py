"""Runs downlink commands for the daemon, exactly once (docs/protocol.md §3 command).

For each command: refuse what the registry or this agent does not allow; answer a command
already in the record (agent/command_log.py) from it; otherwise commit the record, run the
handler, commit the answer. A handler returning None answers later (`restart`: from the record
after the agent started again). The vehicle tables' connection belongs to one worker thread
(`db()`), so SQLite waits never stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import TypeVar

from geostream.clock import wall_ms
from geostream.messages import Command

from .command_log import CommandLog
from .commands import Answer, bounded, refusal, replay
from .vehicle_db import open_vehicle_db

log = logging.getLogger(__name__)
T = TypeVar("T")

AsyncHandler = Callable[[dict], Awaitable[Answer | None]]
# the id of the command a handler runs for (config.set keeps it in its rollback record)
current_command: ContextVar[int] = ContextVar("current_command", default=0)


class CommandRunner:
    def __init__(self, db_path: str, handlers: dict[str, AsyncHandler] | None = None,
                 clock: Callable[[], int] = wall_ms):
        self.db_path = db_path
        self.handlers: dict[str, AsyncHandler] = dict(handlers or {})
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vehicle-db")
        self._conn: sqlite3.Connection | None = None
        self.running: set[int] = set()  # ids being run now (a repeat meanwhile waits for it)
        self.run_log: list[tuple[int, str]] = []  # (id, name) of every command run

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_vehicle_db(self.db_path)
        return self._conn

    async def db(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the vehicle tables' thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: fn(self._connection()))

    async def run(self, cmd: Command) -> Answer | None:
        """The answer to `cmd`, or None when there is none to send now."""
        if (refused := refusal(cmd, self.handlers)) is not None:
            log.info("command %d %r refused: %s", cmd.id, cmd.name, refused.detail)
            return refused
        if cmd.id in self.running:
            return None  # a repeat while it runs: its answer follows
        self.running.add(cmd.id)
        try:
            return await self._run_once(cmd)
        finally:
            self.running.discard(cmd.id)

    async def _run_once(self, cmd: Command) -> Answer | None:
        try:
            record = await self.db(lambda c: CommandLog(c).lookup(cmd.id))
            if record is not None:
                answer = replay(record)
                if record.answered_ms is None:  # settled now: the next repeat reads it
                    await self._finish(cmd.id, answer)
                log.info("command %d %r repeated: answered from the record (ok=%s %s)",
                         cmd.id, cmd.name, answer.ok, answer.detail)
                return answer
            await self.db(lambda c: CommandLog(c).begin(cmd.id, cmd.name, cmd.args,
                                                        self._clock()))
        except (sqlite3.Error, OSError) as exc:  # not run: it could not be recorded first
            log.warning("command %d %r not run: cannot record it: %s", cmd.id, cmd.name, exc)
            return Answer(False, f"not run: the vehicle cannot record it ({exc})")
        self.run_log.append((cmd.id, cmd.name))
        current_command.set(cmd.id)
        try:
            answer = await self.handlers[cmd.name](cmd.args)
        except Exception as exc:  # a failing command is answered, never kills the uplink
            log.exception("command %d %r failed", cmd.id, cmd.name)
            answer = Answer(False, f"{type(exc).__name__}: {exc}")
        if answer is None:
            log.info("command %d %r: answered after it completes", cmd.id, cmd.name)
            return None
        answer = bounded(answer)
        log.info("command %d %r: ok=%s %s", cmd.id, cmd.name, answer.ok, answer.detail)
        try:
            await self._finish(cmd.id, answer)
        except (sqlite3.Error, OSError) as exc:  # answered anyway; a repeat says interrupted
            log.warning("command %d: cannot record the answer: %s", cmd.id, exc)
        if answer.then is not None:  # e.g. config.set's restart: only after the record
            answer.then()
        return answer

    async def _finish(self, command_id: int, answer: Answer) -> None:
        await self.db(lambda c: CommandLog(c).finish(command_id, answer.ok, answer.detail,
                                                     answer.result, self._clock()))

    def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(close).result()
        self._executor.shutdown()
