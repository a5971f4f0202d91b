"""The embedded (SQLite) store's worker thread: its blocking calls run there one after another,
and the event loop awaits each with one queue put and one loop wakeup.

`StoreThread.run(fn, *args)` is what the store's concerns await (`SqliteDb._run`, `_read`):
the call goes into a `queue.SimpleQueue`, the thread runs it and hands the result back with
one `call_soon_threadsafe`, which resolves the awaiting future. It is also a
`concurrent.futures.Executor` (`submit`), for `loop.run_in_executor` callers.

Why not a one-worker `ThreadPoolExecutor` awaited through `loop.run_in_executor`: per call that
builds a `concurrent.futures.Future`, an asyncio future chained to it (`wrap_future`, two done
callbacks) and takes the pool's two locks and its idle semaphore. Measured on this project's
machine, 20,000 awaited no-op calls: 21–24 µs of the event loop's thread per call that way,
14.5–17.7 µs this way (process CPU 33–37 against 24–30 µs). The gateway awaits one per commit,
per hello (authentication) and per stored command or alert change.

A call whose awaiting task was cancelled before the thread took it is not run, as an
executor's queued work item is not. A loop that emulates time (tests/emuclock.py) is told of
every call (`outside_job`) so that its clock does not move while the thread works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class StoreThread(concurrent.futures.Executor):
    """One daemon thread running submitted calls in order (started by the first call)."""

    def __init__(self, name: str):
        self.name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._shutdown = False
        self._start_lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the thread; its result or exception here."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put((fn, args, loop, future))
        track = getattr(loop, "outside_job", None)  # a loop on an emulated clock
        if track is not None:
            track(future)
        return await future

    def submit(self, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put((functools.partial(fn, *args, **kwargs), (), None, future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; the queued ones still run, then the thread ends (joined if `wait`)."""
        with self._start_lock:
            if not self._shutdown:
                self._shutdown = True
                self._queue.put(None)
        if wait and self._thread is not None:
            self._thread.join()

    def _put(self, item: tuple) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._shutdown:
                    self._thread = threading.Thread(target=self._work, name=self.name,
                                                    daemon=True)
                    self._thread.start()
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self._queue.put(item)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args, loop, future = item
            if loop is None:  # submit(): a concurrent future
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:
                        future.set_exception(exc)
                continue
            if future.cancelled():  # its task gave up before the call started
                continue
            try:
                result, error = fn(*args), None
            except BaseException as exc:
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody awaits the answer
                pass


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    """On the loop: resolve an awaited call (unless its task was cancelled meanwhile)."""
    if future.done():
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, StopIteration):  # a future refuses it (it would end a coroutine)
        future.set_exception(RuntimeError(f"StopIteration raised in a store call: {error}"))
    else:
        future.set_exception(error)
