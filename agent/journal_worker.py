"""Runs every Journal call on one dedicated thread, so fsyncs never stall the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from .config import JournalConfig
from .journal import Journal


class JournalWorker:
    def __init__(self, config: str | JournalConfig):
        if isinstance(config, str):
            config = JournalConfig(path=config)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        # open on the worker thread too: one thread owns the connection for its whole life
        self.journal: Journal = self._executor.submit(
            Journal, config.path, max_mb=config.max_mb, max_age_h=config.max_age_h,
            memory_readings=config.memory_readings,
        ).result()

    @property
    def epoch(self) -> int:
        """The journal's epoch; 0 while it could not be opened (disk trouble at start-up)."""
        return self.journal.epoch

    async def call(self, method: str, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, getattr(self.journal, method), *args)

    def close(self) -> None:
        self._executor.submit(self.journal.close).result()
        self._executor.shutdown()
