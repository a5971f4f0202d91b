"""The agent daemon: sources → group-committed journal → uplink, with systemd integration."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from .config import AgentConfig, ConfigError
from .journal_worker import JournalWorker
from .readings import Event, Reading
from .sd_notify import SystemdNotifier
from .sources import Source
from .uplink import Uplink

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 10.0


def build_sources(config: AgentConfig) -> list[Source]:
    from pathlib import Path

    from .gps.config import make_source as make_gps_source

    sources: list[Source] = []
    gps = make_gps_source(config.gps, config.source_path)
    if gps is not None:
        sources.append(gps)
    if config.can:
        from .can.config import make_sources as make_can_sources

        sources.extend(make_can_sources(config.can, config.source_path,
                                        Path(config.source_path).parent))
    if not sources:
        raise ConfigError(f"{config.source_path}: no source configured ([gps] or [can])")
    return sources


class Agent:
    def __init__(self, config: AgentConfig, sources: list[Source]):
        self.config = config
        self.sources = sources
        self.journal = JournalWorker(config.journal)
        self.uplink = Uplink(config, self.journal)
        self.notifier = SystemdNotifier()
        self._pending: list[Reading] = []
        self._flush_now = asyncio.Event()
        self.accepted = 0
        self._tick = self.notifier.watchdog_interval(STATUS_INTERVAL_S)
        if self.journal.journal.moved_aside:
            self._pending.append(Event(time.time_ns() // 1_000_000, "journal-recreated",
                                       {"moved_aside": self.journal.journal.moved_aside}))

    def emit(self, reading: Reading) -> None:
        self._pending.append(reading)
        if len(self._pending) >= self.config.journal.commit_max_readings:
            self._flush_now.set()

    async def _commit_loop(self, stopping: asyncio.Event) -> None:
        """Group commit: one transaction per interval or per commit_max_readings readings."""
        interval = self.config.journal.commit_interval_ms / 1000
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._flush_now.wait()
            except TimeoutError:
                pass
            self._flush_now.clear()
            await self.flush()
            if stopping.is_set():
                return

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        # on disk trouble the journal holds readings in memory and returns fewer seqs: only
        # committed readings are accepted (docs/journal.md)
        seqs = await self.journal.call("append", batch)
        self.accepted += len(seqs)
        self.uplink.notify()

    def status(self) -> dict:
        return {
            "accepted": self.accepted,
            "uplink": self.uplink.stats.state,
            "sources": {s.name: s.status() for s in self.sources},
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        tasks = [loop.create_task(s.run(self.emit), name=f"source:{s.name}") for s in self.sources]
        uplink = loop.create_task(self.uplink.run(), name="uplink")
        committer = loop.create_task(self._commit_loop(stopping), name="journal")
        self.notifier.notify("READY=1")
        log.info("fleet-agent %s running: journal %s epoch %d", self.config.vehicle_id,
                 self.config.journal.path, self.journal.epoch)
        try:
            while not stopping.is_set():
                for t in (*tasks, uplink, committer):
                    if t.done() and not t.cancelled() and t.exception():
                        raise t.exception()
                self.notifier.notify("WATCHDOG=1")
                self.notifier.notify(f"STATUS={self._status_line()}")
                try:
                    async with asyncio.timeout(self._tick):
                        await stopping.wait()
                except TimeoutError:
                    pass
        finally:
            self.notifier.notify("STOPPING=1")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._flush_now.set()
            stopping.set()
            await committer  # flushes what the sources emitted before they stopped
            uplink.cancel()
            await asyncio.gather(uplink, return_exceptions=True)
            self.journal.close()
            log.info("fleet-agent stopped: %d readings accepted this run", self.accepted)

    def _status_line(self) -> str:
        states = ", ".join(f"{s.name}: {s.status().get('state', '?')}" for s in self.sources)
        return f"{states}; uplink {self.uplink.stats.state}; accepted {self.accepted}"


def run_daemon(config: AgentConfig) -> int:
    try:
        sources = build_sources(config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2

    async def main() -> None:
        await Agent(config, sources).run()

    asyncio.run(main())
    return 0
