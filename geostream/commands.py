"""The one registry of downlink commands (docs/protocol.md §3 command): each command's name,
description, argument schema and limits, declared as data. The backend refuses a command that
does not fit it before storing anything (HTTP 400, MCP error), the gateway marks a stored one
that no longer fits as failed instead of sending it, and the agent checks what it receives
against the same declarations before running a handler. A new command is one `CommandSpec`
here plus its handler in `agent/commands.py`. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cbor2

from .schema import value_problem

# A command name: a short dotted verb ("ping", "position.now", "config.set").
MAX_NAME_CHARS = 64
# A command's arguments, CBOR-encoded: 4 KiB. A command travels on the session stream between
# batches and acks; 4 KiB is at most four 1,200-byte QUIC datagrams, so even on a slow link it
# delays the next ack by a few packets at most, and it still holds a configuration fragment of
# a hundred settings. Its JSON copy in the store stays small too.
MAX_ARGS_BYTES = 4096
# Text arguments without a bound of their own.
MAX_TEXT_ARG_CHARS = 1024

ARG_TYPES = ("int", "number", "text", "bool")


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument: its name, type (`ARG_TYPES`), whether it must be given, its bounds (for a
    number the range, for text the length) and what it means."""

    name: str
    type: str
    description: str
    required: bool = False
    low: float | None = None
    high: float | None = None
    max_chars: int = MAX_TEXT_ARG_CHARS


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command: its declared arguments, or with `free_args` any plain values (text, numbers,
    bools, null, maps and arrays of them) within MAX_ARGS_BYTES, which the handler ignores."""

    name: str
    description: str
    args: tuple[Arg, ...] = ()
    free_args: bool = False


REGISTRY: dict[str, CommandSpec] = {c.name: c for c in (
    CommandSpec("ping", "Answer `pong`: checks the downlink end to end (gateway → agent → "
                "answer in the store). Any arguments (e.g. a note) are kept with the command "
                "and ignored by the vehicle.", free_args=True),
)}


def _arg_problem(spec: Arg, value: Any) -> str | None:
    t = type(value)
    if spec.type == "bool":
        return None if t is bool else "must be true or false"
    if spec.type == "text":
        if t is not str:
            return "must be text"
        return None if len(value) <= spec.max_chars else f"longer than {spec.max_chars}"
    if spec.type == "int" and t is not int:
        return "must be an integer"
    if spec.type == "number" and not (t is int or t is float and math.isfinite(value)):
        return "must be a finite number"
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        return f"must be within {spec.low}..{spec.high}"
    return None


def command_problem(name: Any, args: Any,
                    registry: dict[str, CommandSpec] = REGISTRY) -> str | None:
    """Why (`name`, `args`) is not a command of the registry, or None."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        return f"a command name is text of 1..{MAX_NAME_CHARS} characters"
    spec = registry.get(name)
    if spec is None:
        return f"unknown command {name!r} (known: {', '.join(sorted(registry))})"
    if not isinstance(args, dict):
        return "args must be a map"
    try:
        size = len(cbor2.dumps(args))
    except Exception as exc:  # a value CBOR cannot hold
        return f"args cannot be encoded: {type(exc).__name__}"
    if size > MAX_ARGS_BYTES:
        return f"args of {size} bytes exceed {MAX_ARGS_BYTES}"
    if spec.free_args:
        problem = value_problem(args)
        return None if problem is None else f"{name}: args hold {problem}"
    known = {a.name: a for a in spec.args}
    for key in args:
        if key not in known:
            return f"{name}: unknown argument {key!r}"
    for a in spec.args:
        if a.name not in args:
            if a.required:
                return f"{name}: missing argument {a.name!r}"
            continue
        if (problem := _arg_problem(a, args[a.name])) is not None:
            return f"{name}: argument {a.name!r} {problem}"
    return None
