"""The writer survives any row (issue 22): on real SQLite, PostgreSQL and TimescaleDB, a row the
database refuses (or cannot even be written as JSON) goes alone to the dead letter with its
reason, the rows committed with it are stored, and the writer keeps committing afterwards."""

from __future__ import annotations

import asyncio

from backend.store.base import DeadLetter, StoredReading
from backend.writer import BatchWriter
from geostream.clock import wall_ms as now_ms

TS = now_ms() - 3_600_000  # an hour ago: inside every store's window


def position(vehicle: str, seq: int) -> StoredReading:
    return StoredReading(vehicle_id=vehicle, epoch=1, seq=seq, time_ms=TS + seq, kind="pos",
                         lat=52.0, lon=4.0, received_ms=TS)


def self_referencing() -> dict:
    data: dict = {"bus": "truck"}
    data["loop"] = data
    return data


async def dead_letters(store) -> dict[tuple, dict]:
    return {(d["vehicle_id"], d["seq"]): d for d in await store.dead_letters()}


async def test_bad_rows_among_good_ones_are_isolated_and_the_writer_goes_on(any_store):
    store = any_store
    writer = BatchWriter(store)
    writer.start()
    try:
        cyclic = StoredReading(vehicle_id="attacker", epoch=1, seq=1, time_ms=TS, kind="can",
                               data=self_referencing(), received_ms=TS)
        # 2^64 fits no SMALLINT/INTEGER column (asyncpg's DataError was once retried forever)
        huge_sats = StoredReading(vehicle_id="attacker", epoch=1, seq=2, time_ms=TS,
                                  kind="pos", lat=1.0, lon=1.0, sats=2**64, received_ms=TS)
        nan_letter = DeadLetter("attacker", 1, 3, {"lat": float("nan"), "loop": cyclic.data},
                                "refused at the gateway", TS)
        # one group commit: the bystanders' rows and the attacker's share the transaction
        await asyncio.wait_for(asyncio.gather(
            writer.submit([position("bystander", 1), position("bystander", 2)], []),
            writer.submit([cyclic, huge_sats], [nan_letter]),
            writer.submit([position("other", 1)], []),
        ), 60)
        assert await store.count_readings("bystander") == 2
        assert await store.count_readings("other") == 1
        assert await store.count_readings("attacker") == 0
        letters = await dead_letters(store)
        assert set(letters) == {("attacker", 1), ("attacker", 2), ("attacker", 3)}
        assert "unstorable" in letters[("attacker", 1)]["reading"]  # kept as text
        assert letters[("attacker", 1)]["error"]
        assert letters[("attacker", 2)]["reading"]["sats"] == 2**64
        # the writer still commits afterwards
        await asyncio.wait_for(writer.submit([position("bystander", 3)], []), 30)
        assert await store.count_readings("bystander") == 3
        assert writer.stats.isolated_rows == 2
    finally:
        await writer.stop(timeout=10)


class BuggyClassifier:
    """A real SQLite store whose failure classification has a bug the first time it is asked
    (what kills a writer loop is code, not data: this stands for any such bug)."""

    def __init__(self, inner):
        self._inner = inner
        self.broken = True

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def is_transient(self, exc):
        if self.broken:
            self.broken = False
            raise RuntimeError("bug in is_transient")
        return self._inner.is_transient(exc)


async def test_a_writer_loop_that_dies_is_restarted_with_an_alarm(tmp_path):
    from backend.store import open_store
    from backend.writer import Unstorable

    store = open_store(f"sqlite://{tmp_path / 'fleet.db'}")
    await store.open()
    writer = BatchWriter(BuggyClassifier(store))
    writer.start()
    try:
        bad = StoredReading(vehicle_id="attacker", epoch=1, seq=1, time_ms=TS, kind="pos",
                            lat=1.0, lon=1.0, sats=2**64, received_ms=TS)
        results = await asyncio.wait_for(asyncio.gather(
            writer.submit([bad], []), return_exceptions=True), 30)
        assert isinstance(results[0], Unstorable)  # its vehicle is told, and re-sends
        assert writer.stats.restarts == 1 and "bug in is_transient" in writer.stats.alarm
        assert writer.status()["alarm"]
        # restarted: the next submissions commit, the bad row now goes to the dead letter
        await asyncio.wait_for(asyncio.gather(
            writer.submit([position("bystander", 1)], []), writer.submit([bad], [])), 30)
        assert await store.count_readings("bystander") == 1
        assert [d["seq"] for d in await store.dead_letters()] == [1]
        assert writer.backlog_rows == 0
    finally:
        await writer.stop(timeout=10)
        await store.close()
