"""Compressed batches (docs/protocol.md §3 `z`): round trip, bounded inflation, bad streams."""

from __future__ import annotations

import zlib

import cbor2
import pytest

from geostream.codec import MAX_MESSAGE_BYTES, FrameDecoder, encode
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Batch, Welcome
from geostream.session import ClientSession, ServerSession


def frame(m: dict) -> bytes:
    payload = cbor2.dumps(m)
    return len(payload).to_bytes(4, "big") + payload


def readings(n: int) -> tuple:
    return tuple({"q": q, "ts": 1_700_000_000_000 + 100 * q, "k": "pos",
                  "lat": 52.37 + q * 1e-6, "lon": 4.89 + q * 1e-6, "spd": 48.6}
                 for q in range(1, n + 1))


def test_compressed_batch_round_trip_and_smaller():
    batch = Batch(epoch=3, readings=readings(200))
    plain, packed = encode(batch), encode(batch, compress=True)
    assert len(packed) < len(plain) / 2
    (got,) = FrameDecoder().feed(packed)
    assert got == batch and got.wire_size == len(packed)


def test_agent_compresses_only_when_the_gateway_says_so():
    for z in (False, True):
        c = ClientSession("v", "t", 3)
        c.data_to_send()
        c.receive_data(encode(Welcome(credit=100, max_batch_bytes=65536, time=0, z=z)))
        c.send_batch(list(readings(50)))
        m = cbor2.loads(c.data_to_send()[4:])
        assert ("z" in m) is z and ("readings" in m) is not z


def test_zip_bomb_is_too_large_and_garbage_malformed():
    bomb = zlib.compress(b"\x00" * (MAX_MESSAGE_BYTES * 4))
    cases = ((bomb, ErrorCode.TOO_LARGE), (b"not deflate", ErrorCode.MALFORMED),
             (zlib.compress(b"\xff\xff"), ErrorCode.MALFORMED), ("text", ErrorCode.MALFORMED))
    for z, code in cases:
        with pytest.raises(ProtocolError) as exc:
            FrameDecoder().feed(frame({"t": "batch", "epoch": 1, "z": z}))
        assert exc.value.code == code
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(frame({"t": "batch", "epoch": 1, "z": zlib.compress(cbor2.dumps([])),
                                   "readings": []}))


def test_gateway_session_accepts_compressed_batch():
    from geostream.messages import Hello

    s = ServerSession()
    s.receive_data(encode(Hello(vehicle="v", token="t", epoch=3)))
    s.accept(0)
    (ev,) = s.receive_data(encode(Batch(epoch=3, readings=readings(20)), compress=True))
    assert len(ev.batch.readings) == 20
