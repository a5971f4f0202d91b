"""Batches of several vehicles share one transaction (backend/gateway_ingest.py): a row the
database refuses costs only that row (a dead letter, acknowledged), the other vehicle's batch in
the same transaction is stored and acknowledged. Real gateway, SQLite store, aioquic clients."""

from __future__ import annotations

import asyncio
import sqlite3

from geostream.messages import Ack, Batch
from tests.integration.net.rig import GatewayRig, until
from tests.integration.net.test_hostile_wire import welcomed

TS = 1_700_000_000_000


class GatedStore:
    """The real store; its first write waits for `gate` (a busy commit, deterministically)."""

    def __init__(self, inner):
        self._inner = inner
        self.gate = asyncio.Event()
        self.first = True

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def write(self, readings, dead):
        if self.first:
            self.first = False
            await self.gate.wait()
        await self._inner.write(readings, dead)


def pos(q: int) -> dict:
    return {"q": q, "ts": TS + q, "k": "pos", "lat": 52.0, "lon": 4.0}


async def test_a_poison_row_costs_only_itself_in_a_shared_transaction(tmp_path, pki):
    rig = GatewayRig(tmp_path, pki)
    gated = rig.writer.store = GatedStore(rig.store)
    await rig.start()
    try:
        with sqlite3.connect(rig.db_path) as db:  # the database refuses one row: a real refusal
            db.execute("CREATE TRIGGER poison BEFORE INSERT ON telemetry_arrivals "
                       "WHEN NEW.vehicle_id = 'attacker' AND NEW.seq = 3 "
                       "BEGIN SELECT RAISE(ABORT, 'poison row'); END")
        attacker = await welcomed(rig, "attacker")
        bystander = await welcomed(rig, "bystander")
        attacker.send(Batch(epoch=7, readings=(pos(1),)))  # its commit waits at the gate
        await until(lambda: rig.writer._committing, 10, "the first commit under way")
        attacker.send(Batch(epoch=7, readings=(pos(2), pos(3), pos(4))))
        bystander.send(Batch(epoch=7, readings=(pos(1), pos(2))))
        await until(lambda: rig.writer.backlog_rows == 6, 10, "both batches queued")
        gated.gate.set()
        assert (await attacker.next_message(Ack)).through == 1
        assert (await attacker.next_message(Ack)).through == 4  # the poison row is acked too
        assert (await bystander.next_message(Ack)).through == 2
        assert await rig.seqs("attacker") == [1, 2, 4]
        assert await rig.seqs("bystander") == [1, 2]
        letters = {(d["vehicle_id"], d["seq"]) for d in await rig.store.dead_letters()}
        assert letters == {("attacker", 3)}
        assert rig.writer.stats.isolated_rows == 1
        # the attacker's and the bystander's rows went in one transaction (the refused one)
        assert rig.writer.stats.failures >= 1 and rig.writer.stats.transactions >= 2
    finally:
        await rig.stop()
