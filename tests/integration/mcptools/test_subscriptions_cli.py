"""Notification subscriptions from the CLI (`python -m backend notifications`, a process of
its own calling the running backend's HTTP API with a user's token): the API's rules hold (a
viewer subscribes for themself, not for a group). The CLI only speaks HTTP, so one store kind
is enough here; the rules run on both stores in test_subscriptions.py and the API's tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.integration.mcptools.test_mcp import REPO, backend  # noqa: F401 (fixture)

MAIL = {"events": ["job.completed"], "channel": "email", "target": "ops@example.com"}


@pytest.fixture
def db_url(tmp_path):
    """SQLite only (see the module)."""
    return f"sqlite://{tmp_path / 'fleet.db'}"


async def _cli(backend, token: str, *args: str) -> subprocess.CompletedProcess:  # noqa: F811
    """The CLI in its own process (on a thread: the backend serves on this loop)."""
    env = {**os.environ, "FLEET_API_TOKEN": token,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "backend", "notifications", *args, "--url",
            f"http://127.0.0.1:{backend.http_port}"]
    return await asyncio.to_thread(subprocess.run, argv, env=env, cwd=REPO, capture_output=True,
                                   text=True, timeout=60, stdin=subprocess.DEVNULL)


async def test_subscriptions_from_the_cli(backend):  # noqa: F811
    viewer = backend.tokens["viewer"]
    made = await _cli(backend, viewer, "subscribe", json.dumps(MAIL))
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["subscription"]["id"]
    refused = await _cli(backend, viewer, "subscribe", json.dumps({**MAIL, "group": "north"}))
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr
    listed = await _cli(backend, viewer, "list")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [sid]
    assert (await _cli(backend, viewer, "unsubscribe", str(sid))).returncode == 0
    assert await backend.store.subscriptions() == []
