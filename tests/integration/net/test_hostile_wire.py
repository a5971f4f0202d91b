"""Attacks on the shared ingestion path with one vehicle's own token (issue 22, the wire):
a crafted batch must be refused at the edge, and every other vehicle keeps being acknowledged.
Real gateway, SQLite store and aioquic clients on loopback."""

from __future__ import annotations

import asyncio
import struct

import cbor2

from geostream.errors import ErrorCode
from geostream.messages import Ack, Batch, Error, Welcome
from tests.integration.net.rig import RawClient

TS = 1_700_000_000_000
# tag 28 (shareable) around a map whose one value is tag 29 (shared reference) to itself
SELF_REFERENCING_MAP = bytes.fromhex("d81ca16161d81d00")
PLACEHOLDER = "\u2603" * 8


def framed(message: dict, raw: bytes) -> bytes:
    """`message` encoded with its PLACEHOLDER text replaced by the raw CBOR item `raw`."""
    payload = cbor2.dumps(message).replace(cbor2.dumps(PLACEHOLDER), raw)
    return struct.pack(">I", len(payload)) + payload


def expanding_shared_references(levels: int = 6, fanout: int = 32) -> bytes:
    """A map {"a": array} whose array holds the same inner array `fanout` times, `levels`
    deep: fanout**levels leaves (32**6 ≈ 1.07e9) in a few hundred bytes."""
    def level(depth: int, index: int) -> bytes:
        """Shareable number `index`: an array of `fanout` copies of the level below."""
        head = bytes.fromhex("d81c") + bytes([0x98, fanout])
        if depth == 1:
            return head + b"\x00" * fanout
        inner = level(depth - 1, index + 1)  # shareable index+1, defined inline once
        return head + inner + (bytes.fromhex("d81d") + cbor2.dumps(index + 1)) * (fanout - 1)
    return bytes.fromhex("a16161") + level(levels, 0)


async def welcomed(gw, vehicle: str, epoch: int = 7) -> RawClient:
    token = await gw.provision(vehicle)
    client = await RawClient(gw).connect()
    assert isinstance(await client.hello(vehicle, token, epoch), Welcome)
    return client


def can_batch(sig_placeholder: str = PLACEHOLDER) -> dict:
    return {"t": "batch", "epoch": 7,
            "readings": [{"q": 1, "ts": TS, "k": "can", "bus": "truck", "sig": sig_placeholder}]}


async def other_vehicle_acked(gw, vehicle: str = "bystander") -> None:
    client = await welcomed(gw, vehicle)
    client.send(Batch(epoch=7, readings=({"q": 1, "ts": TS, "k": "pos", "lat": 52.0,
                                          "lon": 4.0},)))
    ack = await client.next_message(Ack, timeout=10)
    assert ack.through == 1
    assert await gw.seqs(vehicle) == [1]
    client.close()


async def refused_malformed(client: RawClient) -> Error:
    err = await client.next_message(Error)
    assert (err.code, err.fatal) == (int(ErrorCode.MALFORMED), True), err
    return err


async def test_self_referencing_sig_is_refused_and_others_still_acked(gw):
    attacker = await welcomed(gw, "attacker")
    attacker.send_raw(framed(can_batch(), SELF_REFERENCING_MAP))
    err = await refused_malformed(attacker)
    assert "tag" in err.reason
    await other_vehicle_acked(gw)
    assert await gw.seqs("attacker") == []
    assert gw.gateway.stats.refusals["malformed"] == 1


async def test_expanding_shared_references_are_refused(gw):
    bomb = expanding_shared_references()
    assert len(bomb) < 700
    attacker = await welcomed(gw, "attacker")
    attacker.send_raw(framed(can_batch(), bomb))
    await refused_malformed(attacker)
    await other_vehicle_acked(gw)
    assert await gw.seqs("attacker") == []


async def test_far_timestamps_are_dead_lettered_counted_and_never_the_position(gw):
    client = await welcomed(gw, "veh-1")
    year_10000 = 253_402_300_800_000
    client.send(Batch(epoch=7, readings=(
        {"q": 1, "ts": TS, "k": "pos", "lat": 52.0, "lon": 4.0},
        {"q": 2, "ts": year_10000, "k": "pos", "lat": 53.0, "lon": 5.0},
        {"q": 3, "ts": 315_964_800_000, "k": "pos", "lat": 54.0, "lon": 6.0},  # 1980
    )))
    err = await client.next_message(Error)
    assert (err.code, err.fatal) == (int(ErrorCode.INVALID_READING), False)
    assert (await client.next_message(Ack)).through == 3  # all acknowledged
    assert await gw.seqs("veh-1") == [1]
    letters = {d["seq"]: d for d in await gw.store.dead_letters()}
    assert set(letters) == {2, 3} and "sane window" in letters[2]["error"]
    assert gw.gateway.stats.invalid_by_rule["time"] == 2
    [last] = await gw.store.last_positions()
    assert (last["seq"], last["time_ms"]) == (1, TS)


async def test_no_acknowledgement_waits_forever(tmp_path, pki):
    from tests.integration.net.rig import GatewayRig, until

    rig = await GatewayRig(tmp_path, pki, slow=(3.0,)).start()  # each commit takes 3 s
    rig.gateway.ack_wait_s = 0.5
    try:
        client = await welcomed(rig, "veh-1")
        client.send(Batch(epoch=7, readings=({"q": 1, "ts": TS, "k": "pos", "lat": 52.0,
                                              "lon": 4.0},)))
        err = await client.next_message(Error)
        assert (err.code, err.fatal) == (int(ErrorCode.INTERNAL), True)
        assert "not confirmed" in err.reason
        assert rig.gateway.stats.commit_timeouts == 1
        # the submission was not lost: it commits late (a re-send would be acked, no new row)
        await until(lambda: rig.writer.backlog_rows == 0, 20, "the late commit")
        assert await rig.seqs("veh-1") == [1]
    finally:
        await rig.stop()


async def test_a_batch_after_an_acknowledged_one_still_times_out(tmp_path, pki):
    """The commit deadline's one timer is armed for the oldest batch waiting and re-armed
    only when it fires (backend/gateway_ingest.py): a later batch whose commit never comes is
    refused at its own deadline even though the batch the timer was armed for was acked."""
    from tests.integration.net.rig import GatewayRig
    from tests.integration.net.test_shared_commit import GatedStore, pos

    rig = GatewayRig(tmp_path, pki)
    gated = rig.writer.store = GatedStore(rig.store)
    gated.first = False  # commits go through until the gate is armed below
    await rig.start()
    rig.gateway.ack_wait_s = 1.0
    try:
        client = await welcomed(rig, "veh-1")
        client.send(Batch(epoch=7, readings=(pos(1),)))
        assert (await client.next_message(Ack)).through == 1
        gated.first = True  # the next commit waits at the gate
        client.send(Batch(epoch=7, readings=(pos(2),)))
        async with asyncio.timeout(30):  # bounded: without the re-arm it never comes
            err = await client.next_message(Error)
        assert "not confirmed" in err.reason and rig.gateway.stats.commit_timeouts == 1
        gated.gate.set()
    finally:
        await rig.stop()


async def test_a_stored_command_that_cannot_be_sent_is_failed_not_the_vehicle(gw):
    token = await gw.provision("veh-1")
    # stored before the registry refused them at the API: oversized, and unknown to it
    big = await gw.store.add_command("veh-1", "ping", {"blob": "x" * 300_000})
    unknown = await gw.store.add_command("veh-1", "format-disk", {})
    good = await gw.store.add_command("veh-1", "ping", {})
    for attempt in range(2):  # and again at the next connection
        client = await RawClient(gw).connect()
        epoch = 7 + attempt
        assert isinstance(await client.hello("veh-1", token, epoch=epoch), Welcome)
        client.send(Batch(epoch=epoch, readings=({"q": 1, "ts": TS, "k": "pos",
                                                  "lat": 52.0, "lon": 4.0},)))
        assert (await client.next_message(Ack)).through == 1
        client.close()
    for cid in (big, unknown):
        c = await gw.store.command(cid)
        assert c.ok is False and c.detail.startswith("not sent:"), c
    assert (await gw.store.command(good)).answered_ms is None  # still pending: it was sent
    assert gw.gateway.stats.commands_failed == 2
