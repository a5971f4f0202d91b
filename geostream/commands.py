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
# route.set carries a driver's day: 60 stops with address, window, contact and notes fit in
# 32 KiB; it goes once per route change, not per reading, so the few datagrams it costs are
# paid rarely.
MAX_ROUTE_BYTES = 32768
# Text arguments without a bound of their own.
MAX_TEXT_ARG_CHARS = 1024
# The longest text any argument may hold (config.set's TOML fragment): the decoder's bound for
# text inside a command's arguments (docs/protocol.md §3 command), below MAX_ARGS_BYTES.
MAX_ARG_TEXT_CHARS = 3500
# A command answer's structured `result`, CBOR-encoded: a DM1 list of a few dozen codes or an
# agent.toml with several CAN buses fits; far below MAX_MESSAGE_BYTES, so an answer never
# crowds out acks.
MAX_RESULT_BYTES = 16384
# The advertised set in a hello: more than the registry will hold for a long time, small
# enough that a hostile hello costs nothing to check.
MAX_ADVERTISED = 64
# What a vehicle that never advertised runs: every agent before protocol revision 2 answers
# `ping` (docs/protocol.md §10).
DEFAULT_ADVERTISED = ("ping",)

ARG_TYPES = ("int", "number", "text", "bool", "map")


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument: its name, type (`ARG_TYPES`), whether it must be given, its bounds (for a
    number the range, for text the length) and what it means. A `map` holds plain values
    (event-data rules, docs/protocol.md §4)."""

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
    bools, null, maps and arrays of them) within `max_args_bytes`, which the handler ignores.
    `answer` says what the vehicle answers; `one_of` names arguments of which at least one
    must be given; `must_be_true` names bool arguments that must be true (a confirmation)."""

    name: str
    description: str
    args: tuple[Arg, ...] = ()
    free_args: bool = False
    answer: str = ""
    max_args_bytes: int = MAX_ARGS_BYTES
    one_of: tuple[str, ...] = ()
    must_be_true: tuple[str, ...] = ()

    def as_json(self) -> dict:
        """For the API and the web app: what to offer and how to ask for it."""
        return {"name": self.name, "description": self.description, "answer": self.answer,
                "free_args": self.free_args, "max_args_bytes": self.max_args_bytes,
                "one_of": list(self.one_of), "must_be_true": list(self.must_be_true),
                "args": [{"name": a.name, "type": a.type, "description": a.description,
                          "required": a.required, "low": a.low, "high": a.high,
                          **({"max_chars": a.max_chars} if a.type == "text" else {})}
                         for a in self.args]}


_BUS = Arg("bus", "text", "the CAN bus ([[can.bus]] name)", max_chars=128)

REGISTRY: dict[str, CommandSpec] = {c.name: c for c in (
    CommandSpec("ping", "Answer `pong`: checks the downlink end to end (gateway → agent → "
                "answer in the store). Any arguments (e.g. a note) are kept with the command "
                "and ignored by the vehicle.", free_args=True, answer="detail `pong`"),
    CommandSpec("position.now", "The vehicle's latest GNSS fix, now.",
                answer="result: a `pos` reading map and `age_ms`"),
    CommandSpec("report.interval", "Change the reporting rates for a time, then go back to "
                "the configured ones.", (
                    Arg("send_interval_ms", "int", "live batch pacing (0: every commit)",
                        low=0, high=3_600_000),
                    Arg("status_interval_s", "number", "status report interval", low=1,
                        high=3600),
                    Arg("for_s", "int", "how long the rates hold", required=True, low=10,
                        high=86_400)),
                one_of=("send_interval_ms", "status_interval_s"),
                answer="result: until_ms, send_interval_ms, status_interval_s"),
    CommandSpec("config.get", "The running agent configuration, tokens hidden.", (
        Arg("section", "text", "one table only (e.g. gps)", max_chars=32),),
        answer="result: config (map), file_sha256"),
    CommandSpec("config.set", "Merge TOML tables and keys over the agent's configuration: "
                "checked as check-config does, applied by reload, rolled back automatically "
                "when the vehicle cannot reach the backend afterwards.", (
                    Arg("toml", "text", "tables and keys to merge", required=True,
                        max_chars=MAX_ARG_TEXT_CHARS),
                    Arg("if_sha256", "text", "refuse unless the file is still this one",
                        max_chars=64),
                    Arg("confirm_s", "int", "seconds to reach the backend before rollback",
                        low=10, high=3600)),
                answer="detail: what was reloaded or that the agent restarts; result: "
                       "file_sha256, reloaded, restart"),
    CommandSpec("dtc.read", "The diagnostic trouble codes the vehicle holds now (J1939 DM1, "
                "OBD-II modes 03/07).", (
                    Arg("bus", "text", "one bus only", max_chars=128),),
                answer="result: buses → controllers' sets"),
    CommandSpec("dtc.clear", "Clear the trouble codes of a bus (J1939 DM11 + DM3, OBD-II mode "
                "04). The dispatcher confirms.", (
                    Arg("bus", "text", _BUS.description, required=True, max_chars=128),
                    Arg("confirm", "bool", "the dispatcher confirmed", required=True)),
                must_be_true=("confirm",), answer="detail: what was sent"),
    CommandSpec("obd.query", "Ask the engine controllers for one OBD-II PID.", (
        Arg("bus", "text", _BUS.description, required=True, max_chars=128),
        Arg("pid", "int", "the parameter id", required=True, low=0, high=255),
        Arg("mode", "int", "service 1 (current data) or 2 (freeze frame)", low=1, high=2)),
        answer="result: answers [{src, data (hex)}]"),
    CommandSpec("journal.flush", "Commit what the agent holds and send what waits now.",
                answer="result: backlog, journal_bytes"),
    CommandSpec("restart", "Restart the agent (the journal is committed and closed first).", (
        Arg("reason", "text", "why, for the vehicle's log", max_chars=256),),
        answer="detail `restarted`, after the restart"),
    CommandSpec("message", "A text message for the driver, kept in the vehicle's mailbox.", (
        Arg("text", "text", "the message", required=True, max_chars=1000),
        Arg("message_id", "int", "the backend's message id", required=True, low=1,
            high=2**62),
        Arg("sender", "text", "who wrote it", max_chars=64)),
        answer="detail `delivered`"),
    CommandSpec("route.set", "Deliver a route (the driver's stops) to the vehicle, which "
                "keeps it.", (
                    Arg("route", "map", "route_id, version, stops", required=True),),
                max_args_bytes=MAX_ROUTE_BYTES, answer="detail `stored version N`"),
    CommandSpec("route.clear", "The vehicle forgets a route.", (
        Arg("route_id", "text", "the route's id", required=True, max_chars=64),),
        answer="detail `cleared`"),
)}


def _arg_problem(spec: Arg, value: Any) -> str | None:
    t = type(value)
    if spec.type == "map":
        if t is not dict:
            return "must be a map"
        problem = value_problem(value)
        return None if problem is None else f"holds {problem}"
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
    if size > spec.max_args_bytes:
        return f"args of {size} bytes exceed {spec.max_args_bytes}"
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
    if spec.one_of and not any(k in args for k in spec.one_of):
        return f"{name}: give at least one of {', '.join(spec.one_of)}"
    for key in spec.must_be_true:
        if args.get(key) is not True:
            return f"{name}: {key!r} must be true (confirmed by the dispatcher)"
    return None


def advertised_problem(names: Any) -> str | None:
    """Why `names` is not an advertised command set (docs/protocol.md §3 hello), or None.
    Names the registry does not know are allowed (a newer agent): nobody can send them."""
    if not isinstance(names, list | tuple) or len(names) > MAX_ADVERTISED:
        return f"'commands' must be an array of at most {MAX_ADVERTISED} names"
    if not all(isinstance(n, str) and 0 < len(n) <= MAX_NAME_CHARS for n in names):
        return f"'commands' must hold names of 1..{MAX_NAME_CHARS} characters"
    return None


def offered(advertised: Any) -> list[CommandSpec]:
    """The commands a vehicle that advertised `advertised` (None: never) can be sent."""
    names = DEFAULT_ADVERTISED if advertised is None else advertised
    return [REGISTRY[n] for n in names if n in REGISTRY]
