"""`Coalesced` (backend/store/coalesce.py): lookups asked together share a query;
`CoalescedPuts`: writes put together share a statement, the newest value per key."""

import asyncio

import pytest

from backend.store.coalesce import Coalesced, CoalescedPuts


class Table:
    """A fetch that records each round's keys and answers once `gate` is set."""

    def __init__(self, rows: dict):
        self.rows = rows
        self.rounds: list[list] = []
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def fetch(self, keys):
        self.rounds.append(list(keys))
        await self.gate.wait()
        if self.fail is not None:  # once
            fail, self.fail = self.fail, None
            raise fail
        return {k: self.rows[k] for k in keys if k in self.rows}


async def test_lookups_asked_together_share_one_round():
    table = Table({"a": 1, "b": 2})
    table.gate.set()
    lookup = Coalesced(table.fetch, max_keys=100)
    got = await asyncio.gather(*(lookup.get(k) for k in ("a", "b", "a", "zz")))
    assert got == [1, 2, 1, None]
    assert table.rounds == [["a", "b", "zz"]]


async def test_keys_asked_during_a_round_go_in_the_next_one():
    table = Table({k: k.upper() for k in "abcdef"})
    lookup = Coalesced(table.fetch, max_keys=100)
    first = [asyncio.ensure_future(lookup.get(k)) for k in "ab"]
    for _ in range(3):  # the round starts and waits on its query
        await asyncio.sleep(0)
    assert table.rounds == [["a", "b"]]
    later = [asyncio.ensure_future(lookup.get(k)) for k in "cde"]
    table.gate.set()
    assert await asyncio.gather(*first, *later) == list("ABCDE")
    assert table.rounds == [["a", "b"], ["c", "d", "e"]]
    assert await lookup.get("f") == "F"  # an idle lookup starts a round again
    assert len(table.rounds) == 3


async def test_a_round_takes_at_most_max_keys():
    table = Table({k: k for k in "abcde"})
    table.gate.set()
    lookup = Coalesced(table.fetch, max_keys=2)
    assert await asyncio.gather(*(lookup.get(k) for k in "abcde")) == list("abcde")
    assert table.rounds == [["a", "b"], ["c", "d"], ["e"]]


async def test_a_failed_query_fails_its_askers_and_the_next_round_runs():
    table = Table({"a": 1, "b": 2})
    table.fail = ConnectionError("database away")
    lookup = Coalesced(table.fetch, max_keys=1)
    a, b = asyncio.ensure_future(lookup.get("a")), asyncio.ensure_future(lookup.get("b"))
    for _ in range(3):
        await asyncio.sleep(0)
    table.gate.set()
    with pytest.raises(ConnectionError):
        await a
    assert await b == 2  # the second round (b alone) finds the database back
    assert table.rounds == [["a"], ["b"]]


async def test_an_asker_that_gave_up_costs_the_others_nothing():
    table = Table({"a": 1, "b": 2})
    lookup = Coalesced(table.fetch, max_keys=100)
    a, b = asyncio.ensure_future(lookup.get("a")), asyncio.ensure_future(lookup.get("b"))
    for _ in range(3):
        await asyncio.sleep(0)
    a.cancel()
    table.gate.set()
    assert await b == 2
    assert a.cancelled()


class Writes:
    """A write that records each round's items and commits once `gate` is set."""

    def __init__(self):
        self.rounds: list[list] = []
        self.table: dict = {}
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def write(self, items):
        self.rounds.append(list(items))
        await self.gate.wait()
        if self.fail is not None:  # once
            fail, self.fail = self.fail, None
            raise fail
        self.table.update(items)


async def test_puts_together_share_a_round_and_the_newest_value_is_written():
    writes = Writes()
    puts = CoalescedPuts(writes.write, max_keys=100)
    first = [asyncio.ensure_future(puts.put(k, v)) for k, v in (("a", 1), ("b", 1), ("a", 2))]
    for _ in range(3):  # the round starts and waits on its statement
        await asyncio.sleep(0)
    assert writes.rounds == [[("a", 2), ("b", 1)]]  # a's older value never written
    later = [asyncio.ensure_future(puts.put(k, v)) for k, v in (("a", 3), ("c", 1))]
    writes.gate.set()
    await asyncio.gather(*first, *later)
    assert writes.rounds == [[("a", 2), ("b", 1)], [("a", 3), ("c", 1)]]
    assert writes.table == {"a": 3, "b": 1, "c": 1} and puts.rounds == 2


async def test_a_failed_write_fails_its_round_and_the_next_round_runs():
    writes = Writes()
    writes.fail = ConnectionError("database away")
    puts = CoalescedPuts(writes.write, max_keys=1)
    a, b = asyncio.ensure_future(puts.put("a", 1)), asyncio.ensure_future(puts.put("b", 1))
    for _ in range(3):
        await asyncio.sleep(0)
    writes.gate.set()
    with pytest.raises(ConnectionError):
        await a
    await b
    assert writes.table == {"b": 1}
    await puts.put("a", 2)  # put again (the next report): written
    assert writes.table == {"a": 2, "b": 1}
