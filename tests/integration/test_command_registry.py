"""The one command registry (geostream/commands.py): names, argument schemas and limits, and
the agent's dispatcher checking what it receives against it."""

from __future__ import annotations

import math

import pytest

from agent.commands import CommandDispatcher
from geostream.commands import MAX_ARGS_BYTES, REGISTRY, Arg, CommandSpec, command_problem
from geostream.messages import Command

TEST_REGISTRY = {
    "ping": REGISTRY["ping"],
    "config.set": CommandSpec("config.set", "set things", (
        Arg("rate_hz", "number", "rate", required=True, low=0.1, high=50),
        Arg("name", "text", "a name", max_chars=8),
        Arg("count", "int", "how many", low=0, high=10),
        Arg("on", "bool", "switch"),
    )),
}


def test_ping_is_registered_with_free_bounded_arguments():
    assert command_problem("ping", {}) is None
    assert command_problem("ping", {"note": "hello", "n": 1, "nested": {"a": [1, 2]}}) is None
    assert "exceed" in command_problem("ping", {"blob": "x" * MAX_ARGS_BYTES})
    assert command_problem("ping", {"x": math.nan}) is not None
    assert command_problem("ping", {"x": b"\x00"}) is not None


@pytest.mark.parametrize("name, args, expected", [
    ("", {}, "1..64"),
    ("x" * 65, {}, "1..64"),
    (5, {}, "1..64"),
    ("reboot", {}, "unknown command 'reboot'"),
    ("ping", [], "must be a map"),
    ("config.set", {}, "missing argument 'rate_hz'"),
    ("config.set", {"rate_hz": 1, "colour": "red"}, "unknown argument 'colour'"),
    ("config.set", {"rate_hz": "fast"}, "finite number"),
    ("config.set", {"rate_hz": math.inf}, "finite number"),
    ("config.set", {"rate_hz": 100}, "within"),
    ("config.set", {"rate_hz": 1, "name": "much too long"}, "longer than 8"),
    ("config.set", {"rate_hz": 1, "count": 1.5}, "integer"),
    ("config.set", {"rate_hz": 1, "count": 11}, "within"),
    ("config.set", {"rate_hz": 1, "on": 1}, "true or false"),
])
def test_a_command_outside_the_registry_is_refused_with_the_reason(name, args, expected):
    assert expected in command_problem(name, args, TEST_REGISTRY)


def test_declared_arguments_within_their_bounds_pass():
    assert command_problem("config.set", {"rate_hz": 10, "name": "cab", "count": 3,
                                          "on": True}, TEST_REGISTRY) is None


def test_the_agent_refuses_what_the_registry_refuses_without_running_it():
    d = CommandDispatcher()
    assert d.answer(Command(1, "ping", {"note": "hi"})) == (True, "pong")
    ok, detail = d.answer(Command(2, "ping", {"blob": "x" * 5000}))
    assert not ok and "exceed" in detail
    ok, detail = d.answer(Command(3, "reboot", {}))
    assert not ok and "unsupported" in detail
    assert d.run_log == [(1, "ping")]


def test_each_agent_command_declares_its_bounds():
    route = {"route_id": "r1", "version": 1, "stops": [{"note": "n" * 900}] * 30}
    assert command_problem("route.set", {"route": route}) is None  # > 4 KiB, its own bound
    assert "exceed 32768" in command_problem(
        "route.set", {"route": {**route, "stops": [{"note": "n" * 900}] * 40}})
    assert "exceed 4096" in command_problem("message", {"text": "x" * 1000, "message_id": 1,
                                                        "sender": "s" * 64, "pad": "p" * 4000})
    assert "must be a map" in command_problem("route.set", {"route": [1]})
    assert "at least one of" in command_problem("report.interval", {"for_s": 60})
    assert "must be true" in command_problem("dtc.clear", {"bus": "a", "confirm": False})
    assert command_problem("dtc.clear", {"bus": "a", "confirm": True}) is None
    assert command_problem("config.set", {"toml": "x" * 3500}) is None
    assert "longer than 3500" in command_problem("config.set", {"toml": "x" * 3501})
    spec = REGISTRY["obd.query"].as_json()
    assert [a["name"] for a in spec["args"]] == ["bus", "pid", "mode"]
