"""The PostgreSQL writer's own event loop, on a thread of its own.

A writer transaction is several round trips (BEGIN, one COPY per piece, the newest-position
upsert, COMMIT), and on the gateway's event loop each reply waited for the loop's next turn.
In a storm drain a turn decodes whole batches of readings: 3,000–5,000-row transactions took
0.26 s of wall time for ~0.04 s of database work, the writer was the drain's bottleneck
(backlog 4,000–10,000 rows throughout, vehicles throttled to the minimum credit) and acks
waited (docs/benchmarks.md, "PostgreSQL, session 11"). Here a reply waits at most for the
interpreter's switch interval (5 ms) instead of a turn; the gateway's loop pays one hand-off
per transaction.

`WriteLoop.call(fn, *args)` runs the coroutine `fn(*args)` on the writer's loop and returns its
result (or raises its exception) on the caller's loop. Cancelling the caller cancels the
coroutine. A loop that emulates time (tests/emuclock.py) is told of every call
(`outside_job`), as the SQLite store's thread does, so its clock does not move meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class WriteLoop:
    """An asyncio loop running on a daemon thread from `start()` to `stop()`."""

    def __init__(self, name: str = "pg-writer"):
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop

    async def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """`await fn(*args)` on the writer's loop; its result or exception here."""
        if self._loop is None:
            raise RuntimeError("the writer's loop is not running")
        future: asyncio.Future[T] = asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(fn(*args), self._loop))
        track = getattr(asyncio.get_running_loop(), "outside_job", None)
        if track is not None:  # a loop on an emulated clock
            track(future)
        return await future

    def stop(self) -> None:
        """End the loop (after what runs on it has been closed) and join its thread."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
