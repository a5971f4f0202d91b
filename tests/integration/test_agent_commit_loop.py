"""The daemon's group commit on the wake-up grid (agent/daemon.py `_commit_loop`), on the
emulated clock (tests/emuclock.py) with the real journal: a commit falls on a multiple of the
interval, and with nothing pending the loop sets no timer at all."""

from __future__ import annotations

import asyncio

from agent.config import parse_config
from agent.daemon import Agent
from agent.readings import Event
from tests import emuclock


async def _commits(tmp_path) -> tuple[int, list[float], int, float]:
    loop = asyncio.get_running_loop()
    config = parse_config({"vehicle": {"id": "v", "token": "t"},
                           "server": {"host": "h", "ca_file": "/ca.pem"},
                           "journal": {"path": str(tmp_path / "journal.sqlite")},
                           "status": {"socket": str(tmp_path / "status.sock")}},
                          str(tmp_path / "agent.toml"))
    agent = Agent(config, [])
    flushes: list[float] = []
    flush = agent.flush

    async def counted() -> None:
        flushes.append(loop.time())
        await flush()

    agent.flush = counted  # type: ignore[method-assign]
    stopping = asyncio.Event()
    committer = asyncio.create_task(agent._commit_loop(stopping))
    try:
        await asyncio.sleep(10.0)  # idle: nothing pending
        idle_flushes = len(flushes)
        emitted_at = loop.time()
        agent.emit(Event(1_000, "test", {}))
        while agent.accepted < 1:
            await asyncio.sleep(0.01)
        committed = list(flushes)
        await asyncio.sleep(10.0)  # idle again
        idle_after = len(flushes) - len(committed)
    finally:
        stopping.set()
        agent._flush_now.set()
        agent._first_pending.set()
        await committer
        agent.runner.close()
        agent.journal.close()
    return idle_flushes, committed, idle_after, emitted_at


def test_commit_on_the_next_tick_and_no_timer_while_nothing_is_pending(tmp_path):
    (idle, committed, idle_after, emitted_at), _ = emuclock.run(_commits(tmp_path))
    assert idle == 0 and idle_after == 0  # 10 s with nothing pending: the loop never woke
    [at] = committed
    assert emitted_at < at <= emitted_at + 0.2 + 1e-6  # within one commit interval
    assert abs(at / 0.2 - round(at / 0.2)) < 1e-6  # on the grid: a multiple of 200 ms
