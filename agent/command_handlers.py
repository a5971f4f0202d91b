"""The daemon's command handlers (docs/protocol.md §3, the table of commands): each takes the
command's arguments (already checked against the registry) and returns an `Answer`, or None
when it answers later (`restart`). They act on the running `Agent` (agent/daemon.py); the
durable parts (mailbox, rollback record) go through the command runner's database thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geostream.clock import wall_ms

from . import config_change, rollback
from .command_runner import current_command
from .commands import Answer
from .config import ConfigError, parse_config
from .mailbox import Mailbox

if TYPE_CHECKING:
    from .daemon import Agent

log = logging.getLogger(__name__)

# J1939 (SAE J1939-21/-73): the agent asks as off-board diagnostic tool #1, to everyone; a
# Request (PGN 59904) names the PGN it wants: DM11 clears active codes, DM3 previously active.
J1939_TOOL_SA = 0xF9
J1939_GLOBAL = 0xFF
PGN_REQUEST, PGN_DM11, PGN_DM3 = 0xEA00, 0xFED3, 0xFECC
# OBD-II (ISO 15765-4): functional request id, and the engine controllers' answers
OBD_FUNCTIONAL = 0x7DF
OBD_CLEAR_DTCS = 0x04
# obd.query waits this long for the engine controllers' answers (ISO 15765-4 gives an ECU
# 50 ms; a busy bus and the reader's hand-off add a few hundred)
OBD_ANSWER_S = 1.0
# default window to reach the backend after config.set (a few minutes: a reconnect after a
# restart takes seconds; the tunnel check covers longer outages)
DEFAULT_CONFIRM_S = 300


@dataclass
class RateOverride:
    """report.interval: the rates in force until `until` (monotonic), then the configured."""

    until: float
    send_interval_s: float
    status_interval_s: float


def j1939_request(pgn: int):
    """A J1939 Request for `pgn` to the global address (priority 6), as a can.Message."""
    import can  # only where CAN runs: python-can costs ~0.2 s of agent start-up

    arb = (6 << 26) | (PGN_REQUEST << 8) | (J1939_GLOBAL << 8) | J1939_TOOL_SA
    return can.Message(arbitration_id=arb, is_extended_id=True,
                       data=bytes([pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16]))


def obd_request(mode: int, *args: int):
    """An OBD-II request to the functional address, as a can.Message."""
    import can

    payload = bytes([mode, *args])
    return can.Message(arbitration_id=OBD_FUNCTIONAL, is_extended_id=False,
                       data=(bytes([len(payload)]) + payload).ljust(8, b"\x55"))


class AgentCommands:
    """name → handler for the daemon's command runner."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.override: RateOverride | None = None

    def handlers(self) -> dict:
        return {
            "ping": self.ping, "position.now": self.position_now,
            "report.interval": self.report_interval, "config.get": self.config_get,
            "config.set": self.config_set, "dtc.read": self.dtc_read,
            "dtc.clear": self.dtc_clear, "obd.query": self.obd_query,
            "journal.flush": self.journal_flush,
            "restart": self.restart, "message": self.message, "route.set": self.route_set,
            "route.clear": self.route_clear,
        }

    async def ping(self, args: dict) -> Answer:
        return Answer(True, "pong")

    async def position_now(self, args: dict) -> Answer:
        seen = self.agent.last_position
        if seen is None:
            return Answer(False, "no fix yet")
        position, at = seen
        wire = position.to_wire()
        return Answer(True, f"{position.lat:.6f},{position.lon:.6f}",
                      {"position": wire, "age_ms": int((time.monotonic() - at) * 1000)})

    # --- rates -------------------------------------------------------------------------

    async def report_interval(self, args: dict) -> Answer:
        machine = self.agent.uplink.machine
        configured = self.agent.configured_rates()
        send_s = args.get("send_interval_ms", configured[0] * 1000) / 1000
        status_s = float(args.get("status_interval_s", configured[1]))
        self.override = RateOverride(time.monotonic() + args["for_s"], send_s, status_s)
        machine.send_interval_s, machine.status_interval_s = send_s, status_s
        until_ms = wall_ms() + args["for_s"] * 1000
        return Answer(True, f"send every {send_s:g}s, status every {status_s:g}s for "
                      f"{args['for_s']}s", {"until_ms": until_ms,
                                            "send_interval_ms": int(send_s * 1000),
                                            "status_interval_s": status_s})

    def expire_rates(self, now: float) -> None:
        """Back to the configured rates once an override ran out (the housekeeping tick)."""
        if self.override is not None and now >= self.override.until:
            self.override = None
            machine = self.agent.uplink.machine
            machine.send_interval_s, machine.status_interval_s = self.agent.configured_rates()
            log.info("report.interval ran out: configured rates again")

    # --- configuration -----------------------------------------------------------------

    async def config_get(self, args: dict) -> Answer:
        text = Path(self.agent.config_path).read_text(encoding="utf-8")
        try:
            result = config_change.shown(text, args.get("section"))
        except config_change.ChangeRefused as exc:
            return Answer(False, str(exc))
        return Answer(True, f"{len(result['config'])} tables", result)

    async def config_set(self, args: dict) -> Answer | None:
        agent, command_id = self.agent, current_command.get()
        path = Path(agent.config_path)
        old = path.read_text(encoding="utf-8")
        if args.get("if_sha256") not in (None, config_change.sha256(old)):
            return Answer(False, "the configuration changed since (if_sha256 differs)")
        if agent.rollback.pending is not None:
            return Answer(False, "an earlier change is not confirmed yet")
        try:
            new = config_change.merged(old, args["toml"])
            await asyncio.to_thread(config_change.checked, path, new)
            parse_config(tomllib.loads(new), str(path))
        except (config_change.ChangeRefused, ConfigError) as exc:
            return Answer(False, f"refused: {exc}")
        if new == old:
            return Answer(True, "no change", {"file_sha256": config_change.sha256(old),
                                              "reloaded": [], "restart": []})
        pending = rollback.PendingChange(command_id, old, float(args.get(
            "confirm_s", DEFAULT_CONFIRM_S)))
        # the record before the file: a power cut in between rolls back a change never made,
        # which restores the same file
        await agent.runner.db(lambda c: rollback.save(c, pending))
        await asyncio.to_thread(_write_pair, path, old, new)
        agent.rollback = rollback.RollbackWatch(pending, time.monotonic())
        agent.confirm_marks = agent.link_marks()
        plan = agent.reload()
        sha = config_change.sha256(new)
        if plan is None:  # cannot happen after the checks; the watch rolls it back
            return Answer(False, "written but the reload refused it; rolling back")
        result = {"file_sha256": sha, "reloaded": plan.reload, "restart": plan.restart}
        if plan.restart:
            reason = f"config.set {command_id}: {', '.join(plan.restart)}"
            return Answer(True, f"applied; restarting for {', '.join(plan.restart)}"[:256],
                          result, then=lambda: agent.request_restart(reason))
        return Answer(True, f"applied by reload: {', '.join(plan.reload) or 'nothing'}"[:256],
                      result)

    # --- diagnostics -------------------------------------------------------------------

    def _can_sources(self, bus: str | None) -> list:
        return [s for s in self.agent.sources if hasattr(s, "pipeline")
                and (bus is None or s.pipeline.bus == bus)]

    async def dtc_read(self, args: dict) -> Answer:
        sources = self._can_sources(args.get("bus"))
        if not sources:
            return Answer(False, f"no CAN bus {args['bus']!r}" if "bus" in args
                          else "no CAN bus configured")
        buses = {s.pipeline.bus: s.pipeline.dtcs.current() for s in sources}
        n = sum(len(c["dtcs"]) for sets in buses.values() for c in sets)
        return Answer(True, f"{n} codes", {"buses": buses})

    async def dtc_clear(self, args: dict) -> Answer:
        [source, *_] = self._can_sources(args["bus"]) or [None]
        if source is None:
            return Answer(False, f"no CAN bus {args['bus']!r}")
        frames = [j1939_request(PGN_DM11), j1939_request(PGN_DM3)]
        sent = "J1939 DM11 + DM3 requests"
        if source.pipeline.poller is not None:
            frames.append(obd_request(OBD_CLEAR_DTCS))
            sent += ", OBD-II mode 04"
        source.pipeline.outbox.extend(frames)
        return Answer(True, f"sent {sent} on {args['bus']}")

    async def obd_query(self, args: dict) -> Answer:
        [source, *_] = self._can_sources(args["bus"]) or [None]
        if source is None:
            return Answer(False, f"no CAN bus {args['bus']!r}")
        mode, pid, pipeline = args.get("mode", 1), args["pid"], source.pipeline
        key = (mode, pid)
        if key in pipeline.queries:
            return Answer(False, f"PID {pid:#04x} is being asked already")
        answers: list = []
        pipeline.queries[key] = answers
        try:
            pipeline.outbox.append(obd_request(mode, pid))
            await asyncio.sleep(OBD_ANSWER_S)  # the answers' window
        finally:
            del pipeline.queries[key]
        if not answers:
            return Answer(False, "no answer")
        return Answer(True, f"{len(answers)} answer(s)", {"answers": [
            {"src": src, "data": data.hex()} for src, data in answers]})

    # --- journal, restart --------------------------------------------------------------

    async def journal_flush(self, args: dict) -> Answer:
        await self.agent.flush()
        self.agent.uplink.notify()
        stats = await self.agent.journal.stats()
        return Answer(True, f"{stats.pending} readings wait", {
            "backlog": stats.pending, "journal_bytes": stats.file_bytes})

    async def restart(self, args: dict) -> None:
        self.agent.request_restart(args.get("reason", "restart command"))
        return None  # answered from the record once the agent runs again

    # --- the driver's mailbox ----------------------------------------------------------

    async def message(self, args: dict) -> Answer:
        await self.agent.runner.db(lambda c: Mailbox(c).add_message(
            args["message_id"], args["text"], args.get("sender", ""), wall_ms()))
        return Answer(True, "delivered")

    async def route_set(self, args: dict) -> Answer:
        try:
            stored, version = await self.agent.runner.db(
                lambda c: Mailbox(c).set_route(args["route"], wall_ms()))
        except ValueError as exc:
            return Answer(False, str(exc))
        return Answer(True, f"stored version {version}" if stored else f"kept version {version}")

    async def route_clear(self, args: dict) -> Answer:
        gone = await self.agent.runner.db(lambda c: Mailbox(c).clear_route(args["route_id"]))
        return Answer(True, "cleared" if gone else "no such route")


def _write_pair(path: Path, old: str, new: str) -> None:
    """Keep the previous file beside the new one (for people; the record holds it too)."""
    config_change.write_atomically(path.with_name(path.name + ".previous"), old)
    config_change.write_atomically(path, new)
