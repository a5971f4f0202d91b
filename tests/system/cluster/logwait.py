"""Waiting on a backend process's log for a line it prints (bounded; the process dying ends
the wait with its log's tail): the cluster tests start real processes that bind port 0, so
only their logs say which ports they took and when they are ready."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

READY_S = 60.0  # a backend's start on a loaded machine, with PostgreSQL migrations


def log_wait(proc: subprocess.Popen, log: Path, pattern: str, count: int = 1) -> list:
    """The first `count` matches of `pattern` in the log, waiting for them."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        found = re.findall(pattern, log.read_text(errors="replace"))
        if len(found) >= count:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"{log.name} exited: {log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} ×{count} not in {log.name}: {log.read_text()[-3000:]}")


def wait_ready(proc: subprocess.Popen, log: Path, word: str) -> list[int]:
    """Wait for the first line holding `word`; returns the ports it names."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if word in line:
                return [int(p) for p in re.findall(r":(\d+)\b", line)]
        if proc.poll() is not None:
            raise AssertionError(f"{log.name} exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{log.name} not ready: {log.read_text()[-2000:]}")
