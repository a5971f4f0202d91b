"""`Coalesced` (backend/store/coalesce.py): lookups asked together share a query."""

import asyncio

import pytest

from backend.store.coalesce import Coalesced


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
