"""Preset DEFLATE dictionaries (docs/protocol.md §3.2, revision 5): negotiated in the hello and
welcome across revisions, each batch inflated on its own and bounded, hostile pieces refused
with the documented codes, and the gateway holding no inflater for such a session."""

from __future__ import annotations

import hashlib
import random
import zlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geostream.codec import MAX_MESSAGE_BYTES, FrameDecoder, encode
from geostream.deflate import (
    DICTIONARY_BYTES,
    WINDOW_BITS,
    Deflater,
    DictionaryDeflater,
    Inflater,
    inflate_alone,
    pick_dictionary,
)
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Batch, Hello, Welcome
from geostream.session import BatchReceived, ClientSession, Failed, ServerSession, Welcomed
from geostream.zdict import DICTIONARIES, SHA256

# written here, not read from the module: an edit of a shipped dictionary (bytes and pin
# together) must fail this test; a new dictionary is a new id
SHIPPED = {1: "07b7a73a68edaae8f254d3effe8fc1258e537cb202a3acc068f932b979e51dfd"}


def readings(first: int, n: int) -> list[dict]:
    return [{"q": q, "ts": 1_700_000_000_000 + 1000 * q, "k": "pos", "alt": 12.5,
             "lat": 53.5502161 + q * 1.3e-6, "lon": 9.9951682 + q * 0.9e-6, "spd": 48.6 + q % 3,
             "crs": 181.5, "fix": 1, "mode": 3, "sat": 9, "hdop": 0.9}
            for q in range(first, first + n)]


def frame(m: dict) -> bytes:
    payload = cbor2.dumps(m)
    return len(payload).to_bytes(4, "big") + payload


def handshake(zdicts: tuple[int, ...] | None = None) -> tuple[ClientSession, ServerSession, bytes]:
    """An agent offering `zdicts` (None: every dictionary it carries) and our gateway; returns
    the welcome's bytes too."""
    client, server = ClientSession("v", "t", 3, zdicts=zdicts), ServerSession()
    server.receive_data(client.data_to_send())
    server.accept(0)
    welcome = server.data_to_send()
    client.receive_data(welcome)
    return client, server, welcome


def zd(data: bytes, zdict: bytes = DICTIONARIES[1], wbits: int = WINDOW_BITS) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits, zdict=zdict)
    return c.compress(data) + c.flush(zlib.Z_FINISH)


def test_shipped_dictionaries_are_pinned_and_fit_the_window():
    assert set(SHIPPED) <= set(DICTIONARIES)
    for n, d in DICTIONARIES.items():
        assert 0 < len(d) <= DICTIONARY_BYTES
        assert hashlib.sha256(d).hexdigest() == SHA256[n]
    for n, digest in SHIPPED.items():
        assert SHA256[n] == digest


def test_new_agent_and_new_gateway_agree_on_the_dictionary_and_hold_no_inflater():
    client, server, welcome = handshake()
    m = cbor2.loads(welcome[4:])
    assert m["zdict"] == 1 and "z" not in m  # the stream of §3.1 is not offered then
    assert cbor2.loads(encode(Hello("v", "t", 3, zdict=(1,)))[4:])["zdict"] == [1]
    assert server._decoder.inflater is None  # nothing kept for this session between batches
    got, sizes = [], []
    for first in range(1, 101):  # one reading per batch, as a live agent sends them
        batch = readings(first, 1)
        predicted = client.batch_size(batch)
        sizes.append(client.send_batch(batch))
        assert predicted == sizes[-1]
        data = client.data_to_send()
        assert "zd" in cbor2.loads(data[4:])
        (ev,) = server.receive_data(data)
        assert isinstance(ev, BatchReceived)
        got.extend(ev.batch.readings)
    assert got == readings(1, 100)
    plain = len(encode(Batch(epoch=3, readings=tuple(readings(50, 1)))))
    assert sum(sizes) / len(sizes) < plain * 0.6  # the dictionary does the session's work
    # a backlog batch of 100 compresses as well against the dictionary
    client.send_batch(readings(101, 100))
    (ev,) = server.receive_data(client.data_to_send())
    assert list(ev.batch.readings) == readings(101, 100)


def test_batches_arrive_in_any_order_since_none_depends_on_another():
    client, server, _ = handshake()
    frames = []
    for first in (1, 2, 3):
        client.send_batch(readings(first, 1))
        frames.append(client.data_to_send())
    for data in reversed(frames):  # a §3.1 stream would refuse these out of order
        (ev,) = server.receive_data(data)
        assert isinstance(ev, BatchReceived)
    assert server.pending == 3


def test_sizing_then_sending_compresses_once_and_never_sends_a_stale_frame():
    client, _, _ = handshake()
    a, b = readings(1, 2), readings(3, 2)
    size_a = client.batch_size(a)
    assert client.send_batch(b) == client.batch_size(b)  # not a's frame
    assert client.send_batch(a) == size_a
    out = client.data_to_send()
    first = cbor2.loads(out[4:4 + int.from_bytes(out[:4], "big")])
    assert cbor2.loads(inflate_alone(first["zd"], 1, MAX_MESSAGE_BYTES)) == b


def test_old_agent_and_new_gateway_keep_the_session_stream():
    client, server, welcome = handshake(zdicts=())  # revision 4: no `zdict` in its hello
    assert "zdict" not in cbor2.loads(encode(Hello("v", "t", 3))[4:])
    m = cbor2.loads(welcome[4:])
    assert m["z"] is True and "zdict" not in m
    assert isinstance(client.deflater, Deflater)
    for first in (1, 3, 5):
        client.send_batch(readings(first, 2))
        data = client.data_to_send()
        assert "z" in cbor2.loads(data[4:])
        (ev,) = server.receive_data(data)
        assert list(ev.batch.readings) == readings(first, 2)


def test_new_agent_and_old_gateway_use_the_session_stream():
    client = ClientSession("v", "t", 3)
    assert cbor2.loads(client.data_to_send()[4:])["zdict"] == [1]  # offered, not understood
    old_welcome = encode(Welcome(credit=64, max_batch_bytes=65536, time=0, z=True))  # no zdict
    assert isinstance(client.receive_data(old_welcome)[0], Welcomed)
    assert isinstance(client.deflater, Deflater)
    client.send_batch(readings(1, 2))
    decoder = FrameDecoder(inflater=Inflater(MAX_MESSAGE_BYTES))  # what a revision-4 gateway has
    (batch,) = decoder.feed(client.data_to_send())
    assert list(batch.readings) == readings(1, 2)


def test_unknown_ids_fall_back_and_the_highest_common_id_is_picked(monkeypatch):
    _, server, welcome = handshake(zdicts=(7, 900))  # a newer agent's dictionaries only
    m = cbor2.loads(welcome[4:])
    assert m["z"] is True and "zdict" not in m
    assert isinstance(server._decoder.inflater, Inflater)
    monkeypatch.setitem(DICTIONARIES, 2, b"another dictionary")
    assert pick_dictionary((1, 2, 7)) == 2
    assert pick_dictionary((7, 1)) == 1
    assert pick_dictionary(()) is None


def test_a_welcome_naming_a_dictionary_not_offered_is_malformed():
    for offered in ((), (1,)):
        client = ClientSession("v", "t", 3, zdicts=offered)
        client.data_to_send()
        events = client.receive(encode(Welcome(credit=64, max_batch_bytes=65536, time=0,
                                               zdict=5)))
        assert isinstance(events[-1], Failed) and events[-1].code == ErrorCode.MALFORMED
        assert not client.ready and client.closed
        assert client.close_expected()[0] == ErrorCode.MALFORMED


@pytest.mark.parametrize("value", [1, [1] * 9, [-1], [65536], [True], ["1"], [1.0], {"1": 1}])
def test_ill_typed_dictionary_offers_are_malformed(value):
    hello = {"t": "hello", "v": 1, "vehicle": "v", "token": "t", "epoch": 1, "zdict": value}
    with pytest.raises(ProtocolError) as exc:
        FrameDecoder().feed(frame(hello))
    assert exc.value.code == ErrorCode.MALFORMED


@pytest.mark.parametrize("value", [[1], -1, 65536, True, "1", 1.0, None])
def test_ill_typed_dictionary_picks_are_malformed(value):
    welcome = {"t": "welcome", "v": 1, "credit": 1, "max_batch_bytes": 1, "time": 0,
               "zdict": value}
    with pytest.raises(ProtocolError) as exc:
        FrameDecoder().feed(frame(welcome))
    assert exc.value.code == ErrorCode.MALFORMED


def dictionary_decoder() -> FrameDecoder:
    decoder = FrameDecoder()
    decoder.zdict = 1
    return decoder


def test_bombs_truncations_trailers_and_foreign_streams_are_refused():
    good = zd(cbor2.dumps(readings(1, 2)))
    far = zlib.compressobj(9, zlib.DEFLATED, -15)  # copies from 10 KiB back: beyond the window
    block = bytes(range(256)) * 40
    far_back = far.compress(cbor2.dumps([block, block])) + far.flush()
    sync_flushed = zlib.compressobj(6, zlib.DEFLATED, -WINDOW_BITS, zdict=DICTIONARIES[1])
    cases = [
        (zd(b"\x00" * (MAX_MESSAGE_BYTES * 4)), ErrorCode.TOO_LARGE),  # 1 MiB of zeros in ~1 KB
        (zd(b"\x81" + b"\x00" * MAX_MESSAGE_BYTES), ErrorCode.TOO_LARGE),  # one byte over
        (good[:-1], ErrorCode.MALFORMED),  # ends before its final block
        (good + b"\x00", ErrorCode.MALFORMED),  # bytes after it
        ((sync_flushed.compress(cbor2.dumps(readings(1, 2)))
          + sync_flushed.flush(zlib.Z_SYNC_FLUSH)), ErrorCode.MALFORMED),  # no final block
        (zlib.compress(cbor2.dumps(readings(1, 2))), ErrorCode.MALFORMED),  # zlib header
        (far_back, ErrorCode.MALFORMED),
        (b"not deflate \xff\xfe", ErrorCode.MALFORMED),
        (zd(b"\xff\xff"), ErrorCode.MALFORMED),  # inflates, but is not CBOR
        ("text", ErrorCode.MALFORMED),
    ]
    for piece, code in cases:
        with pytest.raises(ProtocolError) as exc:
            dictionary_decoder().feed(frame({"t": "batch", "epoch": 1, "zd": piece}))
        assert exc.value.code == code, piece[:20]
    # exactly at the bound inflates
    at_limit = zd(b"\x00" * 1000)
    assert len(inflate_alone(at_limit, 1, 1000)) == 1000
    with pytest.raises(ProtocolError) as exc:
        inflate_alone(at_limit, 1, 999)
    assert exc.value.code == ErrorCode.TOO_LARGE


def test_the_wrong_shape_for_the_session_is_malformed():
    piece = zd(cbor2.dumps(readings(1, 2)))
    with pytest.raises(ProtocolError) as exc:  # no dictionary agreed
        FrameDecoder(inflater=Inflater(MAX_MESSAGE_BYTES)).feed(
            frame({"t": "batch", "epoch": 1, "zd": piece}))
    assert exc.value.code == ErrorCode.MALFORMED
    stream_piece = Deflater().piece(cbor2.dumps(readings(1, 2)))
    with pytest.raises(ProtocolError) as exc:  # a dictionary agreed: no session stream
        dictionary_decoder().feed(frame({"t": "batch", "epoch": 1, "z": stream_piece}))
    assert exc.value.code == ErrorCode.MALFORMED
    for both in ({"zd": piece, "z": stream_piece}, {"zd": piece, "readings": readings(1, 2)}):
        with pytest.raises(ProtocolError) as exc:
            dictionary_decoder().feed(frame({"t": "batch", "epoch": 1, **both}))
        assert exc.value.code == ErrorCode.MALFORMED
    # and through the gateway's session: the error is queued and the session closed
    _, server, _ = handshake()
    events = server.receive(frame({"t": "batch", "epoch": 3, "z": stream_piece}))
    assert isinstance(events[-1], Failed) and server.closed


def test_the_session_inflater_is_made_at_its_first_piece():
    inflater = Inflater(MAX_MESSAGE_BYTES)
    assert inflater._z is None
    d = Deflater()
    assert inflater.piece(d.piece(b"abc")) == b"abc"
    assert inflater._z is not None


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000))
def test_any_bytes_round_trip(data):
    assert inflate_alone(DictionaryDeflater(1).piece(data), 1, MAX_MESSAGE_BYTES) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_pieces_never_crash_the_gateway_session(piece):
    _, server, _ = handshake()
    events = server.receive(frame({"t": "batch", "epoch": 3, "zd": piece}))
    assert isinstance(events[-1], Failed)
    assert events[-1].code in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE)


def test_sizing_a_batch_beyond_the_message_bound_answers_its_size():
    client, _, _ = handshake()
    noise = random.Random(5).randbytes(MAX_MESSAGE_BYTES + 1000)
    big = [{**readings(1, 1)[0], "blob": noise}]  # incompressible: the frame exceeds the bound
    assert client.batch_size(big) > MAX_MESSAGE_BYTES  # an answer, so the agent asks for less
