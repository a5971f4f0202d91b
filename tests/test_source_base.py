"""The one reopen loop every source runs (agent/sources.py), driven on an emulated clock: the
delays between attempts, the one reset rule, the counters and the states."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.sources import Finished, ReopeningSource, SourceState
from tests import emuclock

log = logging.getLogger("test.source")


class Script(ReopeningSource):
    """A source that plays a script: each step is what one open (and its session) does."""

    def __init__(self, steps: list[str], **kw) -> None:
        super().__init__("fake", log, **kw)
        self.steps = list(steps)
        self.attempts: list[float] = []  # loop time of every open
        self.closed = 0
        self.states_at_open: list[SourceState] = []

    async def _open(self) -> str:
        loop = asyncio.get_running_loop()
        self.attempts.append(loop.time())
        self.states_at_open.append(self.state)
        step = self.steps.pop(0)
        if step == "fail":
            raise OSError("no such device")
        if step == "bug":
            raise RuntimeError("a bug, not a missing device")
        return step

    async def _session(self, step: str, emit) -> str:
        if step == "data-then-unplug":
            emit("reading")
            self.heard()
            await asyncio.sleep(5)  # worked for a while
            raise OSError("device unplugged")
        if step == "eof":
            return "closed by peer"  # opened, nothing came
        raise Finished

    async def _close(self, step: str) -> None:
        self.closed += 1


def test_delays_double_until_data_arrives_then_start_again():
    async def main():
        src = Script(["fail", "fail", "fail", "data-then-unplug", "eof", "fail", "end"],
                     reopen_min_s=1, reopen_max_s=8)
        out: list = []
        task = asyncio.get_running_loop().create_task(src.run(out.append))
        while src.state != SourceState.FINISHED:
            await asyncio.sleep(1)
        task.cancel()
        t0 = src.attempts[0]
        return src, out, [t - t0 for t in src.attempts]

    (src, out, times), _ = emuclock.run(main())
    # 1, 2, 4 s after failures; the session that delivered data (5 s) resets the delay to 1 s;
    # a session without data does not (2 s), nor does a failed open after it (4 s)
    assert times == [0, 1, 3, 7, 13, 15, 19]
    assert out == ["reading"]
    assert dict(src.counts) == {"opens": 3, "open_failures": 4, "lost": 2}
    assert src.closed == 3  # after every session, however it ended
    assert src.states_at_open == [SourceState.CLOSED] + [SourceState.DOWN] * 6


def test_the_delay_is_capped():
    async def main():
        src = Script(["fail"] * 6 + ["end"], reopen_min_s=1, reopen_max_s=4)
        task = asyncio.get_running_loop().create_task(src.run(lambda r: None))
        while src.state != SourceState.FINISHED:
            await asyncio.sleep(1)
        task.cancel()
        return [b - a for a, b in zip(src.attempts, src.attempts[1:], strict=False)]

    delays, _ = emuclock.run(main())
    assert delays == [1, 2, 4, 4, 4, 4]


def test_an_error_that_is_not_a_device_error_is_not_retried():
    async def main():
        await Script(["bug"]).run(lambda r: None)

    with pytest.raises(RuntimeError, match="a bug"):
        emuclock.run(main())
