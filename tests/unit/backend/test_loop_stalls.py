"""The loop-stall recorder counts ticks later than STALL_S and the collector's part in each
(pure, on given times), and its edge reports the collector's real pauses."""

import asyncio
import gc

from backend.loop_stalls import STALL_S, StallRecorder, watch


def test_a_tick_on_time_is_no_stall():
    rec = StallRecorder()
    assert rec.tick(10.0, 10.0 + STALL_S * 0.9) is None
    assert rec.stalls == 0 and rec.longest_s == 0.0


def test_a_stall_that_a_full_collection_filled_is_the_collectors():
    rec = StallRecorder()
    rec.gc_began(2, 10.01)
    rec.gc_ended(10.31)
    stall = rec.tick(10.0, 10.32)
    assert stall is not None
    assert abs(stall.late_s - 0.32) < 1e-9 and abs(stall.gc_s - 0.30) < 1e-9
    assert stall.gc_generation == 2
    assert (rec.stalls, rec.gc_stalls, rec.gc_pauses) == (1, 1, [0, 0, 1])
    assert abs(rec.gc_longest_s[2] - 0.30) < 1e-9


def test_a_pause_before_the_tick_was_asked_for_is_not_counted_in_its_stall():
    rec = StallRecorder()
    rec.gc_began(0, 9.0)
    rec.gc_ended(9.5)
    stall = rec.tick(10.0, 10.2)
    assert stall is not None and stall.gc_s == 0.0 and stall.gc_generation == -1
    assert (rec.stalls, rec.gc_stalls) == (1, 0)


def test_a_short_pause_in_a_long_stall_leaves_it_to_something_else():
    rec = StallRecorder()
    rec.gc_began(0, 10.1)
    rec.gc_ended(10.12)
    rec.gc_began(1, 10.2)
    rec.gc_ended(10.25)
    stall = rec.tick(10.0, 10.5)
    assert stall is not None and abs(stall.gc_s - 0.07) < 1e-9 and stall.gc_generation == 1
    assert (rec.stalls, rec.gc_stalls) == (1, 0)
    assert abs(rec.longest_s - 0.5) < 1e-9
    assert "1 loop stalls" in rec.summary()


def test_an_end_without_a_start_is_ignored():
    rec = StallRecorder()
    rec.gc_ended(5.0)
    assert rec.gc_pauses == [0, 0, 0]


def test_the_watcher_reports_real_collections_and_unhooks_when_cancelled():
    rec = StallRecorder()
    before = list(gc.callbacks)

    async def main():
        task = asyncio.get_running_loop().create_task(watch(rec))
        await asyncio.sleep(0)  # the watcher hooks the collector
        assert len(gc.callbacks) == len(before) + 1
        gc.collect(2)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    assert rec.gc_pauses[2] >= 1
    assert gc.callbacks == before


def test_a_stall_the_loop_spent_running_is_told_from_one_it_spent_waiting():
    rec = StallRecorder()
    running = rec.tick(10.0, 10.2, cpu_s=0.18)
    waiting = rec.tick(11.0, 11.2, cpu_s=0.01)
    assert running is not None and waiting is not None and abs(running.cpu_s - 0.18) < 1e-9
    assert (rec.stalls, rec.busy_stalls) == (2, 1)
    assert "1 mostly running" in rec.summary()


def test_the_watcher_times_a_long_callback_as_one_stall_on_its_own_timer():
    """On an emulated clock: a callback that takes 200 ms is one stall of ~200 ms, and the
    watcher's ticks meanwhile are one loop timer each, never a stall on their own."""
    from tests.emuclock import run

    rec = StallRecorder()

    async def main():
        loop = asyncio.get_running_loop()
        task = loop.create_task(watch(rec))
        await asyncio.sleep(1.0)  # ~100 ticks on time
        assert rec.stalls == 0
        timers_before = len(loop._scheduled)

        def long_callback():
            loop._now += 0.2  # the callback ran 200 ms

        loop.call_soon(long_callback)
        await asyncio.sleep(0.5)
        # the watcher keeps one timer in the loop's heap, however many ticks ran
        assert len(loop._scheduled) == timers_before
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return len(loop._scheduled)

    left, _ = run(main())
    assert rec.stalls == 1
    assert 0.19 - STALL_S < rec.longest_s <= 0.2 + 1e-6
    assert left == 0  # cancelled: its timer is gone


def test_a_stall_measured_over_a_longer_window_counts_its_share_of_running():
    """The watcher reads the CPU clock every few ticks: a stall's CPU is then known over a
    window longer than the stall, and its share of running over that window decides."""
    rec = StallRecorder()
    running = rec.tick(10.0, 10.1, cpu_s=0.14, window_s=0.14)  # ran throughout
    waiting = rec.tick(11.0, 11.1, cpu_s=0.05, window_s=0.14)  # ran a third of it
    assert running is not None and abs(running.cpu_s - 0.1) < 1e-9
    assert waiting is not None and waiting.cpu_s < 0.05
    assert (rec.stalls, rec.busy_stalls) == (2, 1)


def test_the_watcher_reads_the_cpu_clock_every_few_ticks_and_at_a_stall(monkeypatch):
    """On an emulated clock: on-time ticks read the thread's CPU clock once per
    CPU_SAMPLE_TICKS, a late tick at once (a system call each: not one per tick)."""
    import time as time_module

    from backend import loop_stalls
    from tests.emuclock import run

    reads = []
    real = time_module.thread_time
    monkeypatch.setattr(loop_stalls.time, "thread_time", lambda: reads.append(1) or real())
    rec = StallRecorder()

    async def main():
        loop = asyncio.get_running_loop()
        task = loop.create_task(watch(rec))
        await asyncio.sleep(1.0)  # ~100 ticks on time
        on_time = len(reads)

        def long_callback():
            loop._now += 0.2

        loop.call_soon(long_callback)
        await asyncio.sleep(0.005)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return on_time

    on_time, _ = run(main())
    expected = round(1.0 / loop_stalls.TICK_S) // loop_stalls.CPU_SAMPLE_TICKS
    assert expected - 1 <= on_time <= expected + 2, on_time
    assert rec.stalls == 1 and len(reads) == on_time + 1, "the late tick read it at once"
