"""Downlink commands (docs/protocol.md §5): name → handler, each answered, none fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable

from geostream.messages import Command

log = logging.getLogger(__name__)

Handler = Callable[[dict], tuple[bool, str]]


def _ping(args: dict) -> tuple[bool, str]:
    return True, "pong"


class CommandDispatcher:
    """Runs a command's handler and gives the answer; an unknown name is refused."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {"ping": _ping}
        self.run_log: list[tuple[int, str]] = []  # (id, name) of every command run

    def answer(self, cmd: Command) -> tuple[bool, str]:
        handler = self.handlers.get(cmd.name)
        if handler is None:
            log.info("command %d %r refused: not supported", cmd.id, cmd.name)
            return False, f"unsupported command {cmd.name!r}"
        try:
            ok, detail = handler(cmd.args)
        except Exception as exc:  # a failing command is answered, never kills the uplink
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.run_log.append((cmd.id, cmd.name))
        log.info("command %d %r: ok=%s %s", cmd.id, cmd.name, ok, detail)
        return ok, detail
