"""Group-commit writer: batches from all vehicles share database transactions.

A submission resolves only after the transaction holding it committed, which is what lets the
gateway acknowledge. While one commit runs, new submissions queue and go in the next one, so
an idle system commits at once and a busy one commits in large batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from .store.base import DeadLetter, Store, StoredReading

log = logging.getLogger(__name__)

# Largest transaction: big enough to amortise the fsync, small enough to keep ack latency
# under ~100 ms on an SD card or a busy PostgreSQL.
DEFAULT_MAX_ROWS = 5000
RETRY_MIN_S = 0.2
RETRY_MAX_S = 10.0


@dataclass
class _Submission:
    readings: list[StoredReading]
    dead: list[DeadLetter]
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class WriterStats:
    transactions: int = 0
    rows: int = 0
    dead_letters: int = 0
    failures: int = 0
    backlog_rows: int = 0
    last_commit_s: float = 0.0


class BatchWriter:
    def __init__(self, store: Store, max_rows: int = DEFAULT_MAX_ROWS, linger_s: float = 0.0):
        self.store = store
        self.max_rows = max_rows
        self.linger_s = linger_s
        self.stats = WriterStats()
        self._queue: asyncio.Queue[_Submission] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="writer")

    async def stop(self) -> None:
        """Commit everything already submitted, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def submit(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        """Returns once committed; raises if the writer is stopping."""
        sub = _Submission(readings, dead)
        self.stats.backlog_rows += len(readings)
        self._queue.put_nowait(sub)
        await sub.done

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if self.linger_s:
                await asyncio.sleep(self.linger_s)
            subs = [first]
            rows = len(first.readings)
            while rows < self.max_rows and not self._queue.empty():
                sub = self._queue.get_nowait()
                subs.append(sub)
                rows += len(sub.readings)
            await self._commit(subs)
            for sub in subs:
                self.stats.backlog_rows -= len(sub.readings)
                if not sub.done.done():
                    sub.done.set_result(None)
                self._queue.task_done()

    async def _commit(self, subs: list[_Submission]) -> None:
        readings = [r for s in subs for r in s.readings]
        dead = [d for s in subs for d in s.dead]
        delay = RETRY_MIN_S
        while True:
            t0 = time.perf_counter()
            try:
                await self.store.write(readings, dead)
            except Exception as exc:  # database down or restarting: hold the batch and retry
                self.stats.failures += 1
                log.warning("store write of %d rows failed (%s); retrying in %.1fs",
                            len(readings), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self.stats.transactions += 1
            self.stats.rows += len(readings)
            self.stats.dead_letters += len(dead)
            self.stats.last_commit_s = time.perf_counter() - t0
            return
