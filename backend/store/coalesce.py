"""Lookups by key from many tasks, answered by one query per round (`Coalesced`).

A storm's reconnects put a fleet's hellos on the gateway within milliseconds, and each hello's
authentication was a query of its own: a pool connection (POOL_MAX of them) and a turn of the
gateway's event loop per query, one after another, behind the alert engine's queries. With
100 vehicles reconnecting at once the last one was authenticated 1.9–2.2 s after the radio
came back, and drained only after that (docs/benchmarks.md, "PostgreSQL, session 11"). Here
the keys asked while a round's query runs are the next round's: one query, one connection.

`CoalescedPuts` does the same for writes where the newest value per key is all that counts
(a vehicle's status report, its command list): one statement per round for every key put
meanwhile, instead of a statement, a pool connection and a commit per call.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalesced(Generic[K, V]):
    """`await get(key)`: `fetch(keys)[key]` (None if absent), with every key asked meanwhile
    in the same `fetch` (at most `max_keys` per round; one round at a time)."""

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[dict[K, V]]], max_keys: int):
        self._fetch = fetch
        self.max_keys = max_keys
        self._waiting: dict[K, list[asyncio.Future]] = {}
        self._task: asyncio.Task | None = None
        self.rounds = 0  # queries made (tests, benchmarks)

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._task is None:
            self._task = loop.create_task(self._rounds(), name="coalesced-lookup")
        return await future

    async def _rounds(self) -> None:
        try:
            while self._waiting:
                keys = list(itertools.islice(self._waiting, self.max_keys))
                asked = {k: self._waiting.pop(k) for k in keys}
                self.rounds += 1
                try:
                    found = await self._fetch(keys)
                except asyncio.CancelledError:
                    _fail(asked, RuntimeError("lookup cancelled"))
                    _fail(self._waiting, RuntimeError("lookup cancelled"))
                    self._waiting.clear()
                    raise
                except Exception as exc:  # each asker gets the query's error
                    _fail(asked, exc)
                    continue
                for k, futures in asked.items():
                    value = found.get(k)
                    for f in futures:
                        if not f.done():
                            f.set_result(value)
        finally:
            self._task = None


class CoalescedPuts(Generic[K, V]):
    """`await put(key, value)`: returns once `write(items)` committed `key`'s newest value (a
    value put while an earlier round runs goes in the next one; of values put before a round
    starts, only the newest is written); raises that round's error."""

    def __init__(self, write: Callable[[list[tuple[K, V]]], Awaitable[None]], max_keys: int):
        self._write = write
        self._values: dict[K, V] = {}
        self._rounds: Coalesced[K, None] = Coalesced(self._write_round, max_keys)

    @property
    def rounds(self) -> int:
        """Statements written (tests, benchmarks)."""
        return self._rounds.rounds

    async def put(self, key: K, value: V) -> None:
        self._values[key] = value
        await self._rounds.get(key)

    async def _write_round(self, keys: Sequence[K]) -> dict[K, None]:
        items = [(k, self._values.pop(k)) for k in keys if k in self._values]
        if items:
            await self._write(items)
        return {}


def _fail(asked: dict, exc: BaseException) -> None:
    for futures in asked.values():
        for f in futures:
            if not f.done():
                f.set_exception(exc)
