"""Frames from a bus's reader thread to the event loop, a batch at a time.

python-can's `recv()` blocks, so a thread receives; waking the loop for every frame
(`call_soon_threadsafe` writes to the loop's self-pipe, the loop wakes from epoll) cost more
than decoding the frame (docs/benchmarks.md, "Agent at nominal load"). `Batcher` (reader side,
pure: time is an argument) decides when a batch is due; `Handoff` moves whole batches and wakes
the loop once per burst. Order is kept; beyond `limit` waiting frames the newest are dropped and
counted, so a stalled loop cannot eat the Pi's memory.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

from ..ticks import TICK_S, next_tick

# A frame waits at most this long in the reader before the loop sees it, and a batch is handed
# over on a tick of the agent's wake-up grid (agent/ticks.py), when the loop wakes for the GPS
# read and the journal's commit anyway: the agent records a signal at most every 100 ms, commits
# every 200 ms and sends once a second, so 100 ms of hand-off delay changes no reading and costs
# the loop 10 wake-ups/s, not 2,000 (20 ms and 50/s before the grid).
WINDOW_S = TICK_S
# While a batch is open the reader sleeps this long between draining the driver (socket, tty,
# queue) instead of waking for every frame: a wake-up cost ~17 µs of CPU per frame at 2,000
# frames/s on slcan (bench/bench_can.py). Frames drained are stamped spread over the time since
# the previous drain. Not longer: a socketcan socket's default receive buffer holds ~200 frames
# (~0.1 s at 2,000 frames/s), and the driver must not drop while the reader sleeps.
POLL_S = 0.025
# A batch holds at most this many frames (a full 1 Mbit/s bus, ~8,000 frames/s, fills one in
# ~30 ms), so a saturated bus still hands over steadily and a batch stays a few KB.
BATCH_FRAMES = 256
# Frames waiting for the loop (~10 s of a loaded 500 kbit/s bus); beyond it the reader drops the
# newest and counts them.
LIMIT = 50_000


class Batcher:
    """The reader's policy: collect `(ts_ms, msg)` into a batch, and say how long the next
    `recv()` may block, when to pause so frames gather, and when the batch is due. Pure: `now`
    (monotonic seconds) is an argument.

    Reader loop: idle, block for a frame and `add()` it; drain the driver and `add()` what it
    held; `due()` → hand over `take()`, else sleep `pause(now)`."""

    def __init__(self, window_s: float = WINDOW_S, poll_s: float = POLL_S,
                 batch_frames: int = BATCH_FRAMES):
        self.window_s = window_s
        self.poll_s = poll_s
        self.batch_frames = batch_frames
        self.frames: list[tuple[int, Any]] = []
        self._due = 0.0

    def add(self, item: tuple[int, Any], now: float) -> None:
        if not self.frames:  # due on the grid: the next multiple of the window
            self._due = next_tick(now, self.window_s)
        self.frames.append(item)

    def due(self, now: float) -> bool:
        return bool(self.frames) and (now >= self._due or len(self.frames) >= self.batch_frames)

    def pause(self, now: float) -> float:
        """With a batch open and the driver drained: how long to sleep before draining again."""
        return max(0.0, min(self.poll_s, self._due - now))

    def take(self) -> list[tuple[int, Any]]:
        frames, self.frames = self.frames, []
        return frames


class Handoff:
    """Batches from one thread to one event loop. `put()` and `fail()` are for the reader thread;
    `wait()` and `take()` for the loop. One wake-up per batch at most, none while the loop has
    not yet taken what it was woken for."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = LIMIT):
        self.limit = limit
        self.dropped = 0
        self.wakeups = 0  # times put() woke the loop
        self.failure: BaseException | None = None
        self._loop = loop
        self._lock = threading.Lock()
        self._batches: collections.deque[list] = collections.deque()
        self._waiting = 0  # frames in _batches
        self._woken = False  # a wake-up is on its way or not yet answered by take()
        self._wake = asyncio.Event()

    def put(self, batch: list) -> None:
        """Reader thread: queue `batch` (in order after earlier ones) and wake the loop."""
        with self._lock:
            room = self.limit - self._waiting
            if len(batch) > room:
                self.dropped += len(batch) - room
                batch = batch[:room]
            if batch:
                self._batches.append(batch)
                self._waiting += len(batch)
            wake = bool(batch) and not self._woken
            self._woken = self._woken or wake
            self.wakeups += wake
        if wake:
            self._loop.call_soon_threadsafe(self._wake.set)

    def fail(self, exc: BaseException) -> None:
        """Reader thread: it stopped with `exc`; the loop sees it after the queued frames."""
        with self._lock:
            self.failure = exc
            self._woken = True
        self._loop.call_soon_threadsafe(self._wake.set)

    async def wait(self, timeout: float | None) -> None:
        """Loop: until a batch (or a failure) arrives or `timeout` seconds pass."""
        if self._waiting or self.failure is not None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    def take(self, max_frames: int) -> list[list]:
        """Loop: whole batches in arrival order, about `max_frames` frames (at least one batch)."""
        self._wake.clear()
        out = []
        n = 0
        with self._lock:
            while self._batches and (not out or n + len(self._batches[0]) <= max_frames):
                batch = self._batches.popleft()
                n += len(batch)
                out.append(batch)
            self._waiting -= n
            if not self._batches:
                self._woken = False  # the next put() wakes the loop again
        return out

    @property
    def waiting(self) -> int:
        return self._waiting
