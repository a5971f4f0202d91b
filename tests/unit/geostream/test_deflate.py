"""Compressed batches (docs/protocol.md §3.1): one DEFLATE stream per session, bounded inflation,
bad pieces refused with the documented codes. §3.2 (preset dictionaries): test_zdict.py."""

from __future__ import annotations

import zlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geostream.codec import MAX_MESSAGE_BYTES, FrameDecoder, encode
from geostream.deflate import SYNC_TAIL, WINDOW_BITS, Deflater, Inflater
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Batch, Hello, Welcome
from geostream.session import BatchReceived, ClientSession, ServerSession


def frame(m: dict) -> bytes:
    payload = cbor2.dumps(m)
    return len(payload).to_bytes(4, "big") + payload


def readings(first: int, n: int) -> list[dict]:
    return [{"q": q, "ts": 1_700_000_000_000 + 100 * q, "k": "pos", "alt": 3.5,
             "lat": 52.3702161 + q * 1.3e-6, "lon": 4.8951682 + q * 0.9e-6, "spd": 48.6 + q % 3}
            for q in range(first, first + n)]


def connected_pair(z: bool = True) -> tuple[ClientSession, ServerSession]:
    """An agent of revision 4 (no preset dictionaries, §3.1's stream) and our gateway."""
    client, server = ClientSession("v", "t", 3, zdicts=()), ServerSession()
    server.receive_data(client.data_to_send())
    server.accept(0)
    welcome = server.data_to_send()
    assert cbor2.loads(welcome[4:]).get("z") is True  # offered to every such agent
    if not z:  # an older gateway
        welcome = encode(Welcome(credit=4096, max_batch_bytes=65536, time=0, z=False))
    client.receive_data(welcome)
    return client, server


def test_live_batches_shrink_against_the_session_history():
    client, server = connected_pair()
    sizes, got = [], []
    for first in range(1, 201, 2):  # two readings per batch, as a live agent sends them
        batch = readings(first, 2)
        predicted = client.batch_size(batch)
        sizes.append(client.send_batch(batch))
        assert predicted == sizes[-1]  # sizing used a copy: the stream did not move
        (ev,) = server.receive_data(client.data_to_send())
        assert isinstance(ev, BatchReceived) and list(ev.batch.readings) == batch
        got.extend(ev.batch.readings)
    plain = len(encode(Batch(epoch=3, readings=tuple(readings(101, 2)))))
    # later batches compress against earlier ones: far below plain CBOR, also for two readings
    assert sum(sizes[50:]) / 50 < plain / 2.5
    assert [r["q"] for r in got] == list(range(1, 201))


def test_plain_and_compressed_batches_mix_and_agent_follows_the_welcome():
    client, server = connected_pair(z=False)
    client.send_batch(readings(1, 5))
    m = cbor2.loads(client.data_to_send()[4:])
    assert "readings" in m and "z" not in m
    (ev,) = server.receive_data(encode(Batch(epoch=3, readings=tuple(readings(1, 5)))))
    assert len(ev.batch.readings) == 5

    client, server = connected_pair()
    client.send_batch(readings(1, 5))
    assert "z" in cbor2.loads(client.data_to_send()[4:])
    server.receive_data(encode(Batch(epoch=3, readings=tuple(readings(1, 5))), Deflater()))
    server.receive_data(encode(Batch(epoch=3, readings=tuple(readings(6, 5)))))  # plain
    # a piece the inflater never saw the start of cannot be a continuation: stateful for real
    with pytest.raises(ProtocolError) as exc:
        d = Deflater()
        d.piece(cbor2.dumps(readings(1, 50)))
        server.receive_data(encode(Batch(epoch=3, readings=tuple(readings(11, 50))), d))
    assert exc.value.code == ErrorCode.MALFORMED


def piece_frame(z) -> bytes:
    return frame({"t": "batch", "epoch": 1, "z": z})


def test_bombs_garbage_and_stream_ends_are_refused():
    def raw_deflate(data: bytes, final: bool = False) -> bytes:
        c = zlib.compressobj(6, zlib.DEFLATED, -WINDOW_BITS)
        if final:
            return c.compress(data) + c.flush(zlib.Z_FINISH)
        return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[: -len(SYNC_TAIL)]

    cases = [
        (raw_deflate(b"\x00" * (MAX_MESSAGE_BYTES * 4)), ErrorCode.TOO_LARGE),
        (b"not deflate at all \xff\xfe", ErrorCode.MALFORMED),
        (raw_deflate(b"\xff\xff"), ErrorCode.MALFORMED),  # inflates, but is not CBOR
        (raw_deflate(cbor2.dumps(readings(1, 2)), final=True), ErrorCode.MALFORMED),
        (zlib.compress(cbor2.dumps(readings(1, 2))), ErrorCode.MALFORMED),  # zlib header: not raw
        ("text", ErrorCode.MALFORMED),
    ]
    for z, code in cases:
        with pytest.raises(ProtocolError) as exc:
            FrameDecoder(inflater=Inflater(MAX_MESSAGE_BYTES)).feed(piece_frame(z))
        assert exc.value.code == code, z[:20]
    # without an inflater (a decoder that never offered compression) any 'z' is malformed
    with pytest.raises(ProtocolError) as exc:
        FrameDecoder().feed(piece_frame(raw_deflate(cbor2.dumps(readings(1, 2)))))
    assert exc.value.code == ErrorCode.MALFORMED
    with pytest.raises(ProtocolError):
        FrameDecoder(inflater=Inflater(MAX_MESSAGE_BYTES)).feed(
            frame({"t": "batch", "epoch": 1, "z": b"", "readings": []}))


def test_window_larger_than_4k_is_refused():
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(range(256)) * 40  # 10 KiB, unique within 256 bytes, repeating further back
    first = (c.compress(cbor2.dumps([block])) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    inflater = Inflater(MAX_MESSAGE_BYTES)
    inflater.piece(first)
    # the second piece copies from 10 KiB back: beyond the 4 KiB window of the protocol
    second = (c.compress(cbor2.dumps([block])) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    with pytest.raises(ProtocolError) as exc:
        inflater.piece(second)
    assert exc.value.code == ErrorCode.MALFORMED


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=12))
def test_any_sequence_of_pieces_round_trips(chunks):
    d, i = Deflater(), Inflater(MAX_MESSAGE_BYTES)
    for chunk in chunks:
        assert i.piece(d.piece(chunk)) == chunk


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_pieces_never_crash_the_gateway_session(z):
    s = ServerSession()
    s.receive_data(encode(Hello(vehicle="v", token="t", epoch=1)))
    s.accept(0)
    try:
        s.receive_data(piece_frame(z))
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE)
