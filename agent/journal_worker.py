"""Runs every Journal call on one dedicated thread, so fsyncs never stall the event loop.

One async method per Journal operation the daemon and the uplink use, with the Journal's own
signature, so a caller's mistake is a type error, not a misspelt name found at run time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from geostream.codec import EncodedReadings

from .config import JournalConfig
from .journal import DrainState, Journal, JournalStats
from .readings import Reading
from .stops import StopWatch

T = TypeVar("T")


class JournalWorker:
    def __init__(self, config: str | JournalConfig, stop_watch: StopWatch | None = None):
        if isinstance(config, str):
            config = JournalConfig(path=config)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        # open on the worker thread too: one thread owns the connection for its whole life
        self.journal: Journal = self._executor.submit(
            Journal, config.path, max_mb=config.max_mb, max_age_h=config.max_age_h,
            memory_readings=config.memory_readings, stop_watch=stop_watch,
        ).result()

    @property
    def epoch(self) -> int:
        """The journal's epoch; 0 while it could not be opened (disk trouble at start-up)."""
        return self.journal.epoch

    async def _run(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def append(self, readings: Sequence[Reading]) -> list[int]:
        """`Journal.append`: commit readings in one transaction; the seqs made durable."""
        return await self._run(self.journal.append, readings)

    async def acknowledge(self, through: int, ranges: Iterable[tuple[int, int]] = (),
                          epoch: int | None = None) -> int:
        """`Journal.acknowledge`: delete what the backend committed; how many rows went."""
        return await self._run(self.journal.acknowledge, through, ranges, epoch)

    async def next_batch(self, drain: DrainState, max_readings: int,
                         max_bytes: int) -> EncodedReadings:
        """`Journal.next_batch`: the next batch to send, live position first."""
        return await self._run(self.journal.next_batch, drain, max_readings, max_bytes)

    async def acked_through(self) -> int:
        return await self._run(self.journal.acked_through)

    async def stats(self) -> JournalStats:
        return await self._run(self.journal.stats)

    def close(self) -> None:
        self._executor.submit(self.journal.close).result()
        self._executor.shutdown()
