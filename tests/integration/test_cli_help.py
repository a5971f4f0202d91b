"""Every command of `fleet-agent` and `fleet-backend` (`python -m backend`), at every level,
answers `--help` with its own usage and exit status 0."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from agent import cli as agent_cli
from backend import cli as backend_cli


def _help(main, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    return exit_.value.code or 0, out.getvalue()


def _backend_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every command path of the backend's parser: ("vehicles",), ("vehicles", "add"), …"""
    for action in parser._actions:  # argparse keeps its subcommands nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name)
                yield from _backend_paths(sub, (*path, name))


@pytest.mark.parametrize("command", ["run", *agent_cli.TOOLS])
def test_each_agent_command_has_its_own_help(command):
    code, out = _help(agent_cli.main, [command])
    assert code == 0 and out.startswith(f"usage: fleet-agent {command} "), out[:200]


def test_agent_help_lists_its_commands():
    code, out = _help(agent_cli.main, [])
    assert code == 0 and all(c in out for c in ["run", *agent_cli.TOOLS])


def test_each_backend_command_has_its_own_help():
    paths = list(_backend_paths(backend_cli._parser()))
    assert ("vehicles", "add") in paths and ("serve",) in paths
    for path in paths:
        code, out = _help(backend_cli.main, list(path))
        assert code == 0 and f" {' '.join(path)} " in out.splitlines()[0] + " ", (path, out[:200])
