"""Downlink commands (docs/protocol.md §3 command): name → handler, each answered, none fatal.

What a command is (name, arguments, limits) is declared once in `geostream/commands.py`, shared
with the backend; a command that does not fit it is answered ok=false without running. The
pure rules live here: `refusal` (what is answered without running), `replay` (the answer to a
command already in the agent's record) and `bounded` (an answer the wire can carry). The
synchronous `CommandDispatcher` runs handlers that need nothing durable (the in-process test
rigs); the daemon runs commands through `agent/command_runner.py`, which records them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import cbor2

from geostream.commands import MAX_RESULT_BYTES, REGISTRY, command_problem
from geostream.messages import Command

from .command_log import Record

if TYPE_CHECKING:
    from .command_runner import CommandRunner

log = logging.getLogger(__name__)

Handler = Callable[[dict], tuple[bool, str]]

# Commands whose effect is that the agent starts again: begun and never answered means done.
DONE_WHEN_INTERRUPTED = frozenset({"restart"})
INTERRUPTED = "interrupted by an agent restart; not run again"


@dataclass(frozen=True, slots=True)
class Answer:
    ok: bool
    detail: str
    result: dict | None = None
    # what the agent does once this answer is recorded (never sent): a restart a handler
    # needs must not cut the recording short, or the repeat after it would say "interrupted"
    then: Callable[[], None] | None = field(default=None, compare=False, repr=False)


def refusal(cmd: Command, known: set[str] | dict) -> Answer | None:
    """The answer to a command this agent does not run or whose arguments the registry
    refuses (nothing recorded, nothing run), or None."""
    if cmd.name not in known:
        return Answer(False, f"unsupported command {cmd.name!r}")
    if cmd.name in REGISTRY and (problem := command_problem(cmd.name, cmd.args)) is not None:
        return Answer(False, problem)
    return None


def replay(record: Record) -> Answer:
    """The answer to a repeat of a recorded command (never run again): its recorded answer;
    if it was begun and never answered, the agent died while running it — a restart did
    happen, anything else is reported interrupted."""
    if record.answered_ms is not None:
        return Answer(bool(record.ok), record.detail, record.result)
    if record.name in DONE_WHEN_INTERRUPTED:
        return Answer(True, "restarted")
    return Answer(False, INTERRUPTED)


def bounded(answer: Answer) -> Answer:
    """`answer` as the wire carries it: detail ≤ 256 characters, a result ≤ MAX_RESULT_BYTES
    (else the answer says so instead of breaking the session)."""
    detail = answer.detail[:256]
    if answer.result is not None and len(cbor2.dumps(answer.result)) > MAX_RESULT_BYTES:
        return replace(answer, ok=False, result=None,
                       detail=f"answer larger than {MAX_RESULT_BYTES} bytes; ask for less")
    return replace(answer, detail=detail)


def _ping(args: dict) -> tuple[bool, str]:
    return True, "pong"


HANDLERS: dict[str, Handler] = {"ping": _ping}
# every handler implements a registered command (a registered one without a handler here is
# answered "unsupported": an older agent)
assert HANDLERS.keys() <= REGISTRY.keys(), HANDLERS.keys() - REGISTRY.keys()


class CommandDispatcher:
    """Runs a command's handler at once and gives the answer; an unknown name is refused.
    With a `runner` (the daemon's CommandRunner) the uplink hands commands to it instead."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = dict(HANDLERS)
        self.run_log: list[tuple[int, str]] = []  # (id, name) of every command run
        self.runner: CommandRunner | None = None  # set by the daemon

    @property
    def advertised(self) -> tuple[str, ...]:
        """The command set this agent's hello advertises (docs/protocol.md §3)."""
        names = self.runner.handlers if self.runner is not None else self.handlers
        return tuple(sorted(n for n in names if n in REGISTRY))

    def answer(self, cmd: Command) -> tuple[bool, str]:
        if (refused := refusal(cmd, self.handlers)) is not None:
            log.info("command %d %r refused: %s", cmd.id, cmd.name, refused.detail)
            return refused.ok, refused.detail
        try:
            ok, detail = self.handlers[cmd.name](cmd.args)
        except Exception as exc:  # a failing command is answered, never kills the uplink
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.run_log.append((cmd.id, cmd.name))
        log.info("command %d %r: ok=%s %s", cmd.id, cmd.name, ok, detail)
        return ok, detail
