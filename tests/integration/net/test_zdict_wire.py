"""Compressed batches across protocol revisions on the real gateway (docs/protocol.md §3.1,
§3.2): an agent of revision 4 keeps the session's DEFLATE stream, one of revision 5 gets the
preset dictionary, both are stored and acknowledged; a dictionary bomb is refused without
stalling another vehicle. Real gateway, SQLite store and QUIC clients on loopback."""

from __future__ import annotations

import cbor2

from geostream.codec import MAX_MESSAGE_BYTES, encode
from geostream.deflate import Deflater, DictionaryDeflater
from geostream.errors import ErrorCode
from geostream.messages import Ack, Batch, Error, Hello, Welcome
from tests.integration.net.rig import RawClient
from tests.integration.net.test_hostile_wire import other_vehicle_acked

TS = 1_700_000_000_000


def positions(first: int, n: int) -> tuple[dict, ...]:
    return tuple({"q": q, "ts": TS + 1000 * q, "k": "pos", "lat": 52.0 + q * 1e-5,
                  "lon": 4.0, "spd": 30.5} for q in range(first, first + n))


async def hello(gw, vehicle: str, zdict: tuple[int, ...]) -> tuple[RawClient, Welcome]:
    token = await gw.provision(vehicle)
    client = await RawClient(gw).connect()
    client.send(Hello(vehicle=vehicle, token=token, epoch=7, zdict=zdict))
    welcome = await client.next_message((Welcome, Error))
    assert isinstance(welcome, Welcome), welcome
    return client, welcome


async def test_old_and_new_agents_are_both_stored(gw):
    old, welcome = await hello(gw, "rev4", ())
    assert welcome.z and welcome.zdict is None
    new, welcome = await hello(gw, "rev5", (1, 4000))  # 4000: a later dictionary, unknown here
    assert welcome.zdict == 1 and not welcome.z
    stream = Deflater()
    for first in (1, 3, 5):
        old.send_raw(encode(Batch(epoch=7, readings=positions(first, 2)), stream))
        new.send_raw(encode(Batch(epoch=7, readings=positions(first, 2)), DictionaryDeflater(1)))
    for client in (old, new):
        through = 0
        while through < 6:
            through = (await client.next_message(Ack, timeout=10)).through
        client.close()
    assert await gw.seqs("rev4") == [1, 2, 3, 4, 5, 6]
    assert await gw.seqs("rev5") == [1, 2, 3, 4, 5, 6]


async def test_a_dictionary_bomb_is_refused_and_others_go_on(gw):
    attacker, _ = await hello(gw, "bomber", (1,))
    bomb = DictionaryDeflater(1).piece(b"\x00" * (4 * MAX_MESSAGE_BYTES))  # 1 MiB in ~1 KB
    attacker.send_raw(encode_raw({"t": "batch", "epoch": 7, "zd": bomb}))
    err = await attacker.next_message(Error)
    assert (err.code, err.fatal) == (int(ErrorCode.TOO_LARGE), True), err
    await attacker.closed()
    await other_vehicle_acked(gw)
    assert await gw.seqs("bomber") == []


async def test_a_session_stream_piece_after_a_dictionary_was_agreed_is_malformed(gw):
    client, _ = await hello(gw, "mixer", (1,))
    client.send_raw(encode(Batch(epoch=7, readings=positions(1, 1)), Deflater()))
    err = await client.next_message(Error)
    assert (err.code, err.fatal) == (int(ErrorCode.MALFORMED), True), err
    await client.closed()


def encode_raw(message: dict) -> bytes:
    payload = cbor2.dumps(message)
    return len(payload).to_bytes(4, "big") + payload
