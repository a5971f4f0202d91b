"""Downlink commands (docs/protocol.md §3 command): checked against the one registry
(geostream/commands.py), stored, then sent on the vehicle's open sessions, sent again after
each new welcome until the agent answers.

The gateway owns one `CommandDownlink` and tells it which sessions a vehicle has; a session is
anything with `can_send` and `send_command(Command)` (backend/gateway_conn.py's connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from geostream.backoff import Backoff
from geostream.clock import wall_ms
from geostream.commands import DEFAULT_ADVERTISED, REGISTRY, command_problem
from geostream.messages import Command

from .gateway_stats import GatewayStats
from .store.base import StoredCommand
from .store.protocols import Commands

log = logging.getLogger(__name__)

# Reading a vehicle's pending commands after its welcome is retried while the store is away.
COMMAND_RETRY_MIN_S = 1.0
COMMAND_RETRY_MAX_S = 30.0


class CommandRefused(ValueError):
    """A command the registry (geostream/commands.py) does not allow: nothing was stored."""


class CommandNotOffered(CommandRefused):
    """A registered command the vehicle did not advertise (docs/protocol.md §3, the advertised
    set): it could never run it, so nothing was stored."""


async def advertised(store: Commands, vehicle: str) -> tuple[str, ...]:
    """The commands `vehicle` runs: its latest hello's set, or the 1.0 set if it never said."""
    names = await store.vehicle_commands(vehicle)
    return DEFAULT_ADVERTISED if names is None else tuple(names)


async def check_command(store: Commands, vehicle: str, name: object, args: object) -> None:
    """The one check of a command before it is stored, for every way in (the HTTP API, MCP
    over HTTP and over stdio, the downlink itself): CommandRefused for a name or arguments
    the registry refuses (HTTP 400), CommandNotOffered for one the vehicle did not advertise
    (HTTP 409). The message is the same everywhere."""
    if (problem := command_problem(name, args)) is not None:
        raise CommandRefused(f"bad command: {problem}")
    if name not in (offered := await advertised(store, vehicle)):
        raise CommandNotOffered(f"bad command: vehicle {vehicle!r} does not run {name!r} (it "
                                f"runs: {', '.join(offered)})")


class CommandSession(Protocol):
    """What the downlink needs of one session of a vehicle."""

    @property
    def can_send(self) -> bool: ...
    def send_command(self, cmd: Command) -> bool: ...


class CommandDownlink:
    def __init__(self, store: Commands, sessions: Callable[[str], Iterable[CommandSession]],
                 stats: GatewayStats):
        self.store = store
        self._sessions = sessions  # the vehicle's open sessions on this node
        self.stats = stats  # the gateway's (commands_failed)
        # in a cluster: tells the other nodes a vehicle has a new command (backend/fanout.py)
        self.notify_other_nodes: Callable[[str], None] | None = None

    async def send(self, vehicle: str, name: str, args: dict | None = None,
                   request_key: str | None = None) -> int:
        """Store a command for a vehicle and send it on its open sessions; it is sent again
        after each new welcome until the agent acknowledges it. `request_key`: the sender's
        idempotency key (a repeat stores nothing new; the agent answers a repeated command
        from its memory). Raises CommandRefused, before storing anything, for one the registry
        does not allow."""
        await check_command(self.store, vehicle, name, args if args is not None else {})
        command_id = await self.store.add_command(vehicle, name, dict(args or {}),
                                                  request_key=request_key)
        if any(s.can_send for s in self._sessions(vehicle)):
            # counted first, so an answer is never on record with the command unsent
            await self._count_sent(vehicle, [command_id])
            cmd = Command(id=command_id, name=name, args=dict(args or {}))
            for session in list(self._sessions(vehicle)):
                session.send_command(cmd)
        elif self.notify_other_nodes is not None:
            self.notify_other_nodes(vehicle)  # another node may hold it (docs/scaling.md §7)
        return command_id

    async def woken(self, vehicle: str) -> None:
        """Another node stored a command for `vehicle`: if this node holds its session, send
        what is pending (the agent answers a repeated command from its memory)."""
        for session in list(self._sessions(vehicle)):
            if session.can_send:
                await self.send_pending(vehicle, session)

    async def send_pending(self, vehicle: str, session: CommandSession) -> None:
        """After a welcome: every command of the vehicle not yet acknowledged, oldest first.
        While the store is away this retries as long as the session lasts."""
        backoff = Backoff(COMMAND_RETRY_MIN_S, COMMAND_RETRY_MAX_S)
        while True:
            try:
                pending = await self.store.pending_commands(vehicle)
                break
            except Exception as exc:
                delay = backoff.next()
                log.warning("cannot read commands for %s (retry in %.0fs): %s", vehicle, delay,
                            exc)
                await asyncio.sleep(delay)
        if not pending or not session.can_send:
            return
        sendable = []
        runs = await self._advertised_or_all(vehicle)
        for c in pending:
            if (problem := command_problem(c.name, c.args)) is None and c.name not in runs:
                problem = f"the vehicle does not run {c.name!r}"
            if problem is None:
                sendable.append(c)
            else:  # stored before the registry refused it: failed, never the connection
                await self._fail(vehicle, c, problem)
        pending = sendable
        if not pending:
            return
        await self._count_sent(vehicle, [c.id for c in pending])
        for c in pending:
            session.send_command(Command(id=c.id, name=c.name, args=c.args))

    async def _advertised_or_all(self, vehicle: str) -> tuple[str, ...]:
        """What the vehicle runs; while the store cannot say, everything (the agent answers
        ok=false for what it does not run, never a broken session)."""
        try:
            return await advertised(self.store, vehicle)
        except Exception as exc:
            log.warning("cannot read the command set of %s: %s", vehicle, exc)
            return tuple(REGISTRY)

    async def advertised_by(self, vehicle: str, names: tuple[str, ...] | None) -> None:
        """Keep the command set a vehicle's hello advertised (None: the 1.0 set)."""
        try:
            await self.store.save_vehicle_commands(
                vehicle, list(DEFAULT_ADVERTISED if names is None else names), wall_ms())
        except Exception as exc:  # the previous set stays; the next hello says it again
            log.warning("cannot keep the command set of %s: %s", vehicle, exc)

    async def answered(self, vehicle: str, command_id: int, ok: bool, detail: str,
                       result: dict | None = None) -> None:
        """Record the agent's answer; if the store fails, the command stays pending and its
        next re-send is answered again by the agent (from its memory)."""
        try:
            first = await self.store.answer_command(vehicle, command_id, ok, detail, wall_ms(),
                                                    result)
        except Exception as exc:
            log.warning("cannot record answer of %s to command %d: %s", vehicle, command_id, exc)
            return
        if first:
            log.info("vehicle %s answered command %d: ok=%s %s", vehicle, command_id, ok, detail)

    async def _fail(self, vehicle: str, c: StoredCommand, problem: str) -> None:
        """Mark a stored command that cannot be sent as answered not-ok, with the reason."""
        self.stats.commands_failed += 1
        log.warning("command %d %r for %s not sent: %s", c.id, c.name, vehicle, problem)
        try:
            await self.store.answer_command(vehicle, c.id, False, f"not sent: {problem}"[:256],
                                            wall_ms())
        except Exception as exc:  # stays pending; skipped again at the next welcome
            log.warning("cannot mark command %d failed: %s", c.id, exc)

    async def _count_sent(self, vehicle: str, ids: list[int]) -> None:
        try:
            await self.store.commands_sent(ids, wall_ms())
        except Exception as exc:  # bookkeeping only: the command itself is stored
            log.warning("cannot count commands sent to %s: %s", vehicle, exc)
