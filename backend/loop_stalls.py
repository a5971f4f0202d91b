"""The event loop's stalls: ticks that ran late by more than `STALL_S`, and how much of each was
the cycle collector.

A stalled loop reads no datagram and sends no ack, so every vehicle's ack waits for the stall
to end; a stall longer than a vehicle's probe timeout also brings back resends. `StallRecorder`
is pure (every call takes `now`): the edge (`watch`) reports each tick of a loop timer it arms
every `TICK_S` with the CPU time its thread used meanwhile (a stall the thread mostly ran is
a long callback; one it mostly did not is a wait for a core or the GIL) and the collector's
pauses (`gc.callbacks`), and logs one summary per `SUMMARY_S` window that had stalls, at
WARNING (an operator should see them; docs/benchmarks.md, "Stalls below saturation, session
11").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("fleet.loop")

# A tick this late is a stall: longer than one live batch's commit-and-ack at low load
# (~10–60 ms), so a stall is time every connected vehicle's ack waited for nothing else.
STALL_S = 0.05
# How often the watcher asks for a tick: short against STALL_S so a stall is seen to ~10 ms,
# long enough that the watcher itself costs the loop nothing measurable (100 wakeups/s).
TICK_S = 0.01
# Ticks between two reads of the loop thread's CPU clock when none is late (a late one reads it
# at once): the read is a system call, and on a busy machine one at which the kernel may take
# the core from the thread while it holds the GIL (a profile of the gateway at 3,000 vehicles
# put 8-9 % of its GIL-holding samples on that one line at 100 reads per second). A stall's
# share of running is then measured over at most this many ticks more than the stall.
CPU_SAMPLE_TICKS = 5
# Collector pauses remembered for attribution: more than can end within one stall.
MAX_RECENT_PAUSES = 64
# Seconds between two summary lines in the log (only windows with a stall log one).
SUMMARY_S = 60.0


@dataclass(frozen=True)
class Stall:
    late_s: float  # how late the tick ran
    gc_s: float  # of which the collector paused the process (pauses that ended in the stall)
    gc_generation: int  # the oldest generation collected in it; -1 when none
    cpu_s: float = 0.0  # CPU time the loop's thread used meanwhile (less: it waited for a core
    # or the GIL)


class StallRecorder:
    """Counts stalls and the collector's part in them; pure, every call takes `now` (s)."""

    def __init__(self) -> None:
        self.stalls = 0  # ticks late by more than STALL_S
        self.gc_stalls = 0  # of which the collector took at least half
        self.busy_stalls = 0  # of which the loop's thread ran (used CPU) at least half
        self.longest_s = 0.0
        self.gc_pauses = [0, 0, 0]  # collections per generation
        self.gc_longest_s = [0.0, 0.0, 0.0]  # the longest pause per generation
        self._began: tuple[int, float] | None = None
        self._recent: deque[tuple[float, float, int]] = deque(maxlen=MAX_RECENT_PAUSES)

    def gc_began(self, generation: int, now: float) -> None:
        self._began = (generation, now)

    def gc_ended(self, now: float) -> None:
        if self._began is None:
            return
        generation, began = self._began
        self._began = None
        pause = max(0.0, now - began)
        self.gc_pauses[generation] += 1
        self.gc_longest_s[generation] = max(self.gc_longest_s[generation], pause)
        self._recent.append((now, pause, generation))

    def tick(self, due: float, now: float, cpu_s: float = 0.0,
             window_s: float | None = None) -> Stall | None:
        """A tick asked for at `due` ran at `now`, the loop's thread having used `cpu_s` of
        CPU in the `window_s` seconds before `now` (default: the stall's own length): the
        stall it ends, if it was one. Its CPU is that window's share of running times its
        length."""
        late = now - due
        if late <= STALL_S:
            return None
        in_stall = [(pause, gen) for end, pause, gen in self._recent if due < end <= now]
        gc_s = min(late, sum(pause for pause, _ in in_stall))
        if window_s is not None and window_s > late:
            cpu_s *= late / window_s
        stall = Stall(late, gc_s, max((gen for _, gen in in_stall), default=-1), cpu_s)
        self.stalls += 1
        self.longest_s = max(self.longest_s, late)
        if gc_s * 2 >= late:
            self.gc_stalls += 1
        if cpu_s * 2 >= late:
            self.busy_stalls += 1
        return stall

    def summary(self) -> str:
        return (f"{self.stalls} loop stalls > {STALL_S * 1000:.0f} ms (longest "
                f"{self.longest_s * 1000:.0f} ms), {self.busy_stalls} mostly running, "
                f"{self.gc_stalls} mostly the collector; "
                f"collections per generation {self.gc_pauses}, longest "
                f"{[round(s * 1000) for s in self.gc_longest_s]} ms")


class _Ticker:
    """The watcher's tick: a plain loop timer (`call_at`) re-armed from its own callback; the
    thread's CPU clock read at a late tick and otherwise every `CPU_SAMPLE_TICKS`. A task
    sleeping in a loop cost a future, a timer and a task wakeup per tick, and two CPU-clock
    reads (docs/benchmarks.md, "The gateway's transport edge, session 12")."""

    __slots__ = ("_loop", "_recorder", "_due", "_cpu", "_cpu_at", "_ticks", "_summary_at",
                 "_logged", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, recorder: StallRecorder) -> None:
        self._loop = loop
        self._recorder = recorder
        now = loop.time()
        self._summary_at = now + SUMMARY_S
        self._logged = 0
        self._cpu, self._cpu_at, self._ticks = time.thread_time(), now, 0
        self._due = now + TICK_S
        self.handle = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = self._loop
        now = loop.time()
        self._ticks += 1
        if now - self._due > STALL_S:
            cpu = time.thread_time()
            self._recorder.tick(self._due, now, cpu - self._cpu, now - self._cpu_at)
            self._cpu, self._cpu_at, self._ticks = cpu, now, 0
        elif self._ticks >= CPU_SAMPLE_TICKS:
            self._cpu, self._cpu_at, self._ticks = time.thread_time(), now, 0
        if now >= self._summary_at:
            self._summary_at = now + SUMMARY_S
            recorder = self._recorder
            if recorder.stalls > self._logged:
                self._logged = recorder.stalls
                log.warning("%s", recorder.summary())
        self._due = now + TICK_S
        self.handle = loop.call_at(self._due, self._tick)


async def watch(recorder: StallRecorder) -> None:
    """Tick every TICK_S, report each tick and the collector's pauses to `recorder`, log a
    summary per SUMMARY_S window that had a stall. Runs until cancelled."""
    loop = asyncio.get_running_loop()

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            recorder.gc_began(info["generation"], loop.time())
        else:
            recorder.gc_ended(loop.time())

    gc.callbacks.append(on_gc)
    ticker = _Ticker(loop, recorder)
    try:
        await loop.create_future()  # never done: the ticker runs until this is cancelled
    finally:
        ticker.handle.cancel()
        gc.callbacks.remove(on_gc)
