"""The SQLite store's worker thread (backend/store/store_thread.py): results, errors and order
come back as an executor's would, a cancelled call that had not started never runs, the queue
drains at shutdown, and a loop on an emulated clock waits for the thread's work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from backend.store.store_thread import StoreThread
from tests import emuclock

WAIT_S = 30  # bound on every wait for the other thread (never reached when things work)


def test_results_errors_and_order_from_one_named_thread():
    worker = StoreThread("sqlite-store")

    def boom() -> None:
        raise ValueError("refused")

    async def main() -> None:
        seen: list[tuple[int, str]] = []

        def note(i: int) -> int:
            seen.append((i, threading.current_thread().name))
            return i * i

        assert await asyncio.gather(*(worker.run(note, i) for i in range(50))) == [
            i * i for i in range(50)]
        assert seen == [(i, "sqlite-store") for i in range(50)]
        with pytest.raises(ValueError, match="refused"):
            await worker.run(boom)
        # an executor too, for run_in_executor
        assert await asyncio.get_running_loop().run_in_executor(worker, note, 7) == 49

    asyncio.run(main())
    worker.shutdown()


def test_a_call_cancelled_before_it_started_never_runs():
    worker = StoreThread("sqlite-store")
    busy, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold() -> None:
        busy.set()
        release.wait(WAIT_S)

    async def main() -> None:
        holding = asyncio.ensure_future(worker.run(hold))
        assert await asyncio.to_thread(busy.wait, WAIT_S)
        queued = asyncio.ensure_future(worker.run(ran.append, "queued"))
        await asyncio.sleep(0)
        queued.cancel()
        release.set()
        await holding
        assert await worker.run(ran.append, "after") is None
        assert queued.cancelled()

    asyncio.run(main())
    worker.shutdown()
    assert ran == ["after"]


def test_shutdown_runs_what_was_queued_then_refuses():
    worker = StoreThread("sqlite-store")
    done: list[int] = []
    futures = [worker.submit(done.append, i) for i in range(20)]
    worker.shutdown(wait=True)
    assert done == list(range(20)) and all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        worker.submit(done.append, 99)


def test_an_emulated_clock_stands_still_while_the_thread_works():
    worker = StoreThread("sqlite-store")

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        loop.call_later(1000, lambda: None)  # a far timer the clock could jump to
        before = loop.time()
        await worker.run(time.sleep, 0.2)  # real work on the thread, no emulated time
        return before, loop.time()

    (before, after), _ = emuclock.run(main())
    worker.shutdown()
    assert after == before
