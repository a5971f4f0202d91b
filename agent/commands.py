"""Downlink commands (docs/protocol.md §3 command): name → handler, each answered, none fatal.

What a command is (name, arguments, limits) is declared once in `geostream/commands.py`, shared
with the backend; a command that does not fit it is answered ok=false without running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from geostream.commands import REGISTRY, command_problem
from geostream.messages import Command

log = logging.getLogger(__name__)

Handler = Callable[[dict], tuple[bool, str]]


def _ping(args: dict) -> tuple[bool, str]:
    return True, "pong"


HANDLERS: dict[str, Handler] = {"ping": _ping}
# every handler implements a registered command (a registered one without a handler here is
# answered "unsupported": an older agent)
assert HANDLERS.keys() <= REGISTRY.keys(), HANDLERS.keys() - REGISTRY.keys()


class CommandDispatcher:
    """Runs a command's handler and gives the answer; an unknown name is refused."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = dict(HANDLERS)
        self.run_log: list[tuple[int, str]] = []  # (id, name) of every command run

    def answer(self, cmd: Command) -> tuple[bool, str]:
        handler = self.handlers.get(cmd.name)
        if handler is None:
            log.info("command %d %r refused: not supported", cmd.id, cmd.name)
            return False, f"unsupported command {cmd.name!r}"
        if cmd.name in REGISTRY and (problem := command_problem(cmd.name, cmd.args)) is not None:
            log.info("command %d %r refused: %s", cmd.id, cmd.name, problem)
            return False, problem
        try:
            ok, detail = handler(cmd.args)
        except Exception as exc:  # a failing command is answered, never kills the uplink
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.run_log.append((cmd.id, cmd.name))
        log.info("command %d %r: ok=%s %s", cmd.id, cmd.name, ok, detail)
        return ok, detail
