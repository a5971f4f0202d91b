"""The agent daemon: sources → group-committed journal → uplink, with systemd integration."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import sys
import time
import tomllib
from pathlib import Path

from geostream.clock import wall_ms
from geostream.messages import Status
from geostream.schema import reading_problem

from . import __version__, config_change, control, logging_setup, status
from . import reload as reloading
from .command_handlers import AgentCommands
from .command_runner import CommandRunner
from .config import AgentConfig, ConfigError, load_config, parse_config
from .journal_worker import JournalWorker
from .readings import Action, Event, Position, Reading
from .rollback import KEEP, PROBE, ROLL_BACK, SAVE_EVERY_S, WAIT, RollbackWatch
from .rollback import load as load_rollback
from .rollback import save as save_rollback
from .sd_notify import SystemdNotifier
from .sources import Source
from .stops import StopWatch
from .ticks import next_tick
from .uplink import Uplink
from .uplink_machine import STATUS_INTERVAL_S

log = logging.getLogger(__name__)

# The daemon's housekeeping tick: the systemd watchdog ping and STATUS= line, the Prometheus
# textfile, a nudge to the uplink (which sends a status report when one is due). Shorter when
# systemd's watchdog asks for it (half its period).
HOUSEKEEPING_S = 10.0


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
    def __init__(self, config: AgentConfig, sources: list[Source], config_path: str = "",
                 level_pinned: bool = False):
        self.config = config
        self.config_path = config_path or config.source_path
        # --log-level on the command line wins over [log] level, also on SIGHUP
        self.level_pinned = level_pinned
        self.started = time.monotonic()
        # the in-cab tablet's HTTPS server (docs/driver.md), when [cab] enables it
        self.cab = None
        if config.cab.enabled:
            from .cab.server import CabServer

            self.cab = CabServer(config.cab, self)
        self.status_server = control.StatusServer(
            control.default_socket_path(config.status), self.snapshot, self.take_action,
            self.cab.control if self.cab is not None else None)
        self.textfile = config.status.get("prometheus_textfile", "")
        self.sources = sources
        # arrivals and departures at the mailbox's routes' stops, detected in each commit
        self.journal = JournalWorker(config.journal, stop_watch=StopWatch())
        self.uplink = Uplink(config, self.journal)
        self.uplink.status_provider = self.status_report
        self.uplink.status_interval_s = float(config.status.get("report_interval_s",
                                                                STATUS_INTERVAL_S))
        self.notifier = SystemdNotifier()
        # downlink commands (docs/protocol.md §3): recorded in the journal file, run once
        self.runner = CommandRunner(config.journal.path)
        self.commands = AgentCommands(self)
        self.runner.handlers = self.commands.handlers()
        self.uplink.machine.commands.runner = self.runner
        self.last_position: tuple[Position, float] | None = None  # (fix, monotonic), position.now
        self.rollback = RollbackWatch(None, time.monotonic())  # config.set (run() loads it)
        self.confirm_marks = self.link_marks()
        self.restart_reason: str | None = None
        self._stopping: asyncio.Event | None = None
        self._rollback_saved = 0.0
        self._probes: set[asyncio.Task] = set()  # config.set rollback probes
        self._pending: list[Reading] = []
        self._flush_now = asyncio.Event()
        self._first_pending = asyncio.Event()  # a reading is pending (or the agent stops)
        self.accepted = 0
        self._tick = self.notifier.watchdog_interval(HOUSEKEEPING_S)
        if self.journal.journal.moved_aside:
            self._pending.append(Event(wall_ms(), "journal-recreated",
                                       {"moved_aside": self.journal.journal.moved_aside}))

    async def take_action(self, action: object) -> dict:
        """A driver's action taken on the vehicle (control socket): committed to the journal
        now, then sent like every reading; the applier in the backend judges the rest."""
        reading = Action(wall_ms(), action) if isinstance(action, dict) else None
        wire = {**reading.to_wire(), "q": 1} if reading is not None else None
        if wire is None or (problem := reading_problem(wire)) is not None:
            return {"ok": False, "error": "an action is a map with text key and device_id "
                    "and an integer device_seq" if wire is None else problem}
        seqs = await self.journal.append([reading])
        if not seqs:  # the disk fails: held in memory, not yet accepted
            return {"ok": False, "error": "the vehicle cannot store it now; try again"}
        self.uplink.notify()
        return {"ok": True, "seq": seqs[0]}

    async def take_image(self, parts: list[dict]) -> dict:
        """A proof-of-delivery image's parts (docs/protocol.md §4 "Images", from the cab's
        upload): all committed to the journal in one transaction, or none accepted."""
        now = wall_ms()
        readings = [Action(now, p) for p in parts]
        seqs = await self.journal.append(readings)
        if len(seqs) < len(readings):  # the disk fails: held in memory, not yet accepted
            return {"ok": False, "error": "the vehicle cannot store it now; try again"}
        self.uplink.notify()
        return {"ok": True, "seqs": seqs[:len(readings)]}

    def emit(self, reading: Reading) -> None:
        if type(reading) is Position:
            self.last_position = (reading, time.monotonic())
        if not self._pending:
            self._first_pending.set()
        self._pending.append(reading)
        if len(self._pending) >= self.config.journal.commit_max_readings:
            self._flush_now.set()

    async def _commit_loop(self, stopping: asyncio.Event) -> None:
        """Group commit: one transaction per interval or per commit_max_readings readings. The
        interval's ends are multiples of it on the loop's clock (agent/ticks.py), so a commit
        falls in the same wake-up as the sources' reads."""
        interval = self.config.journal.commit_interval_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending and not stopping.is_set():
                # nothing to commit (a parked vehicle): no timer until a reading comes
                self._first_pending.clear()
                await self._first_pending.wait()
            try:
                async with asyncio.timeout_at(next_tick(loop.time(), interval)):
                    await self._flush_now.wait()
            except TimeoutError:
                # the sources' reads due on this same tick run first: their readings make this
                # commit, and the journal thread does not wait for the interpreter while they
                # decode (each such wait is a sleep and a wake-up of that thread)
                await asyncio.sleep(0)
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
        seqs = await self.journal.append(batch)
        self.accepted += len(seqs)
        log.debug("journal: committed %d of %d readings (%d accepted since start)",
                  len(seqs), len(batch), self.accepted)
        self.uplink.notify()

    def status(self) -> dict:
        return {
            "accepted": self.accepted,
            "uplink": self.uplink.stats.state,
            "sources": {s.name: s.status() for s in self.sources},
        }

    async def snapshot(self) -> dict:
        """What `fleet-agent status` shows (agent/status.py)."""
        mono, now_ms = status.now_pair()
        journal = await self.journal.stats()
        return status.snapshot(
            vehicle=self.config.vehicle_id, version=__version__,
            started_monotonic=self.started, now_monotonic=mono, now_ms=now_ms,
            uplink=status.uplink_status(self.uplink, mono),
            journal=status.journal_status(journal, now_ms),
            sources={s.name: s.status() for s in self.sources}, accepted=self.accepted,
            cab=self.cab.status() if self.cab is not None else None)

    async def status_report(self) -> Status:
        """The small report the backend keeps as this vehicle's latest status."""
        snap = await self.snapshot()
        journal, link = snap["journal"], snap["link"]
        oldest = journal["oldest_unsent_age_s"]
        return Status(
            time=snap["time_ms"], backlog=journal["backlog"], journal_bytes=journal["file_bytes"],
            oldest=None if oldest is None else snap["time_ms"] - int(oldest * 1000),
            dropped=sum(journal["dropped"].values()),
            rtt_ms=None if link.get("rtt_ms") is None else round(link["rtt_ms"]),
            uptime_s=int(snap["uptime_s"]),
            sources=tuple((name[:32], str(src.get("state", "?"))[:32])
                          for name, src in list(snap["sources"].items())[:16]))

    def reload(self) -> reloading.Plan | None:
        """SIGHUP: re-read the config; take over what is safe, log what needs a restart."""
        try:
            new = load_config(self.config_path)
            fresh = build_sources(new)
            level = logging_setup.parse_level(new.log.get("level", "info"),
                                              f"{self.config_path} [log]")
        except ConfigError as exc:
            log.error("SIGHUP: %s; keeping the running configuration", exc)
            return None
        plan = reloading.plan(self.config, new)
        if "log.level" in plan.reload and not self.level_pinned:
            logging_setup.set_level(level)
        swapped = reloading.apply(self.sources, fresh)
        log.info("SIGHUP: reloaded %s", ", ".join(plan.reload) or "nothing (no reloadable "
                 "change)", extra={"RELOADED": " ".join(plan.reload),
                                   "SWAPPED": "; ".join(swapped)})
        if plan.restart:
            log.warning("SIGHUP: changed but needs `systemctl restart fleet-agent`: %s",
                        ", ".join(plan.restart), extra={"NEEDS_RESTART": " ".join(plan.restart)})
        if not plan.restart:  # else the running config stays the reference: the next SIGHUP
            self.config = new  # names the pending restart again
        return plan

    # --- commands: rates, restart, configuration rollback ---------------------------------

    def configured_rates(self) -> tuple[float, float]:
        """(send interval s, status interval s) as configured: what report.interval returns to."""
        return (self.config.server.send_interval_ms / 1000,
                float(self.config.status.get("report_interval_s", STATUS_INTERVAL_S)))

    def request_restart(self, reason: str) -> None:
        """Stop gracefully, then start again in the same process (run_daemon)."""
        log.warning("restarting: %s", reason)
        self.restart_reason = reason
        if self._stopping is not None:
            self._stopping.set()

    def link_marks(self) -> tuple:
        """What changes when the backend is reached: welcomes, the time of the last ack."""
        stats = self.uplink.stats
        return stats.extra.get("welcomes", 0), stats.last_ack_monotonic

    async def _load_rollback(self) -> None:
        """A configuration change not confirmed before the last stop (or power cut)."""
        try:
            pending = await self.runner.db(load_rollback)
        except (sqlite3.Error, OSError) as exc:
            log.warning("vehicle records unavailable: %s", exc)
            return
        if pending is not None and self.rollback.pending is None:
            log.warning("configuration change %d not confirmed yet: %.0fs of %.0fs used",
                        pending.command_id, pending.run_s, pending.confirm_s)
            self.rollback = RollbackWatch(pending, time.monotonic())

    async def _watch_rollback(self) -> None:
        """config.set's rollback (agent/rollback.py), on the housekeeping tick."""
        watch, now = self.rollback, time.monotonic()
        pending = watch.pending
        if pending is None:
            return
        if self.link_marks() != self.confirm_marks and watch.reached_backend() == KEEP:
            await self.runner.db(lambda c: save_rollback(c, None))
            log.info("configuration change %d confirmed: the backend was reached",
                     pending.command_id)
            self.emit(Event(wall_ms(), "config-kept", {"command": pending.command_id}))
            return
        if watch.tick(now) != PROBE:
            if now - self._rollback_saved >= SAVE_EVERY_S:
                self._rollback_saved = now
                await self.runner.db(lambda c: save_rollback(c, pending))
            return
        # a handshake takes up to CONNECT_TIMEOUT_S: apart, so the watchdog ticks on
        task = asyncio.get_running_loop().create_task(self._probe_previous(watch, pending))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe_previous(self, watch: RollbackWatch, pending) -> None:
        """The window ran out unconfirmed: does the previous configuration reach the gateway?"""
        try:
            previous = parse_config(tomllib.loads(pending.previous_text), self.config_path)
            reaches = await self.uplink.handshake_with(previous.server)
        except (ConfigError, tomllib.TOMLDecodeError):
            reaches = True  # cannot judge the old file: the new one failed, go back
        verdict = watch.probe_done(reaches, time.monotonic())
        if verdict == WAIT:
            log.warning("configuration change %d: backend not reached, nor with the previous "
                        "configuration (a tunnel?): waiting another %.0fs", pending.command_id,
                        pending.confirm_s)
            await self.runner.db(lambda c: save_rollback(c, pending))
        elif verdict == ROLL_BACK:
            reason = (f"backend not reached in {pending.confirm_s:.0f}s of running with the "
                      "new configuration; the previous one reaches it")
            log.error("configuration change %d rolled back: %s", pending.command_id, reason)
            await asyncio.to_thread(config_change.write_atomically, Path(self.config_path),
                                    pending.previous_text)
            await self.runner.db(lambda c: save_rollback(c, None))
            self.emit(Event(wall_ms(), "config-rolled-back",
                            {"command": pending.command_id, "reason": reason}))
            self.request_restart(f"configuration change {pending.command_id} rolled back")

    async def _write_textfile(self) -> None:
        try:
            control.write_textfile(self.textfile, await self.snapshot())
        except OSError as exc:
            log.warning("prometheus textfile %s: %s", self.textfile, exc)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.status_server.start()
        tasks = [loop.create_task(s.run(self.emit), name=f"source:{s.name}") for s in self.sources]
        uplink = loop.create_task(self.uplink.run(), name="uplink")
        committer = loop.create_task(self._commit_loop(stopping), name="journal")
        await self._load_rollback()  # after the sources started: no fix waits for it
        if self.cab is not None:
            await self.cab.start()
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
                self.uplink.notify()  # lets the uplink send a status report when one is due
                self.commands.expire_rates(time.monotonic())
                await self._watch_rollback()
                if self.textfile:
                    await self._write_textfile()
                try:  # on the wake-up grid, as the commits (agent/ticks.py)
                    async with asyncio.timeout_at(next_tick(loop.time(), self._tick)):
                        await stopping.wait()
                except TimeoutError:
                    pass
        finally:
            self.notifier.notify("STOPPING=1")
            loop.remove_signal_handler(signal.SIGHUP)
            await self.status_server.close()
            if self.cab is not None:
                await self.cab.close()
            for t in (*tasks, *self._probes):
                t.cancel()
            await asyncio.gather(*tasks, *self._probes, return_exceptions=True)
            self._flush_now.set()
            stopping.set()
            self._first_pending.set()
            await committer  # flushes what the sources emitted before they stopped
            uplink.cancel()
            await asyncio.gather(uplink, return_exceptions=True)
            self.runner.close()
            self.journal.close()
            log.info("fleet-agent stopped: %d readings accepted this run", self.accepted)

    def _status_line(self) -> str:
        states = ", ".join(f"{s.name}: {s.status().get('state', '?')}" for s in self.sources)
        return f"{states}; uplink {self.uplink.stats.state}; accepted {self.accepted}"


def run_daemon(config: AgentConfig, config_path: str = "", level_pinned: bool = False) -> int:
    try:
        sources = build_sources(config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2

    async def main() -> Agent:
        agent = Agent(config, sources, config_path, level_pinned)
        await agent.run()
        return agent

    agent = asyncio.run(main())
    if agent.restart_reason is not None:
        # the same process id: systemd (Type=notify) keeps supervising; the journal and the
        # vehicle records are closed, and the command record answers the restart afterwards
        log.warning("starting again: %s", agent.restart_reason)
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return 0
