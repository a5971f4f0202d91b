"""The gateway's direct path for a §3.2 batch in one whole frame (`FrameDecoder.one_batch`)
answers every frame as the strict decoder does: the same batch, or the same refusal, or it
declines and the strict decoder answers. Frames: the agent's own, the hostile `zd` pieces, and
generated mutations of both. The reference is the strict decoder alone: its readings without
the learned layouts (`geostream.reading_shapes`), which the direct path uses."""

from __future__ import annotations

import random
import zlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geostream import codec
from geostream.codec import FrameDecoder, decode_payload
from geostream.deflate import WINDOW_BITS
from geostream.errors import ProtocolError
from geostream.limits import MAX_CBOR_DEPTH
from geostream.messages import Batch
from geostream.session import BatchReceived, ClientSession, Failed, ServerSession
from geostream.zdict import DICTIONARIES

EPOCH = 3


def readings(first: int, n: int) -> list[dict]:
    return [{"ts": 1_700_000_000_000 + 1000 * q, "k": "pos", "lat": 53.55 + q * 1e-6,
             "lon": 9.99, "spd": 48.6, "fix": 1, "sat": 9, "q": q} for q in range(first, first + n)]


def zd(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -WINDOW_BITS, zdict=DICTIONARIES[1])
    return c.compress(data) + c.flush(zlib.Z_FINISH)


def framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def agent_frames(n: int) -> list[bytes]:
    client, server = ClientSession("v", "t", EPOCH), ServerSession()
    server.receive(client.data_to_send())
    server.accept(0)
    client.receive(server.data_to_send())
    out = []
    for i in range(n):
        client.send_batch(readings(1 + 3 * i, 1 + i % 3))
        out.append(client.data_to_send())
    return out


def decoder() -> FrameDecoder:
    d = FrameDecoder()
    d.zdict = 1
    d.expect_batches(EPOCH)
    return d


def answer(decode, frame: bytes):
    try:
        return decode(frame)
    except ProtocolError as exc:
        return (exc.code, exc.reason)


class _NoShapes:
    """No learned layout: every readings array through `strict_cbor`."""

    def decode(self, raw: bytes) -> None:
        return None

    def learn(self, raw: bytes, value) -> bool:
        return False


def strict(frame: bytes):
    kept, codec._SHAPES = codec._SHAPES, _NoShapes()
    try:
        return decode_payload(frame[4:], None, len(frame), 1)
    finally:
        codec._SHAPES = kept


def check(frame: bytes) -> bool:
    """The direct path answers as the strict decoder (when it answers); True if it did."""
    direct = answer(decoder().one_batch, frame)
    if direct is None:
        return False
    assert direct == answer(strict, frame)
    if isinstance(direct, Batch):
        assert direct.wire_size == len(frame)
    return True


def test_the_agents_frames_take_the_direct_path_and_decode_as_strictly():
    frames = agent_frames(12)
    assert all(check(f) for f in frames)
    assert all(check(f) for f in frames)  # the one-reading ones now by their learned layout
    one = decoder().one_batch(frames[0]).readings
    raw = cbor2.dumps(list(one))
    assert codec._SHAPES.decode(raw) == list(one)
    assert [len(decoder().one_batch(f).readings) for f in frames[:3]] == [1, 2, 3]


HOSTILE_PIECES = [
    zd(b"\x00" * 4_000_000),  # inflates beyond the message bound
    zd(cbor2.dumps(readings(1, 2)))[:-1],  # ends before its final block
    zd(cbor2.dumps(readings(1, 2))) + b"\x00",  # bytes after it
    zlib.compress(cbor2.dumps(readings(1, 2))),  # a zlib header
    b"not deflate \xff\xfe",
    zd(b"\xff\xff"),  # inflates, but is not CBOR
    zd(cbor2.dumps(readings(1, 1)) + b"\x00"),  # a byte after the readings array
    zd(b"\xd8\x1c" + cbor2.dumps(readings(1, 1))),  # a tag (value sharing)
    zd(b"\x9f" + cbor2.dumps(readings(1, 1)[0]) + b"\xff"),  # an indefinite array
    zd(cbor2.dumps([{**readings(1, 1)[0], "lat": cbor2.CBORTag(2, b"\x01")}])),  # a bignum
    zd(b"\x81\xa2\x61q\x01\x61q\x02"),  # a duplicate key
    zd(b"\x81\xa1\x01\x02"),  # a key that is not text
    zd(b"\x81" * (MAX_CBOR_DEPTH + 2) + b"\x01"),  # nested deeper than the bound
    zd(cbor2.dumps([])),  # no readings
    zd(cbor2.dumps(readings(1, 1) * 2)),  # one sequence number twice
    zd(cbor2.dumps([{"q": 0, "ts": 1, "k": "pos"}])),
    zd(cbor2.dumps([{"q": 1, "ts": 1, "k": "nope"}])),
    zd(cbor2.dumps({"q": 1})),  # not an array
    b"",
]


@pytest.mark.parametrize("piece", HOSTILE_PIECES, ids=range(len(HOSTILE_PIECES)))
def test_hostile_pieces_are_refused_as_strictly(piece):
    frame = framed(cbor2.dumps({"t": "batch", "epoch": EPOCH, "zd": piece}))
    assert check(frame)
    assert isinstance(answer(decoder().one_batch, frame), tuple)  # refused


def test_other_shapes_are_left_to_the_strict_decoder():
    piece = zd(cbor2.dumps(readings(1, 1)))
    for m in ({"t": "batch", "epoch": EPOCH + 1, "zd": piece},  # another epoch
              {"t": "batch", "epoch": EPOCH, "zd": piece, "vehicle": "v"},
              {"epoch": EPOCH, "t": "batch", "zd": piece},  # another key order
              {"t": "batch", "epoch": EPOCH, "readings": readings(1, 1)},
              {"t": "batch", "epoch": EPOCH, "zd": "text"}):
        assert decoder().one_batch(framed(cbor2.dumps(m))) is None
    buffered = decoder()
    whole = agent_frames(1)[0]
    assert buffered.feed(whole[:3]) == []
    assert buffered.one_batch(whole) is None  # bytes are waiting: the stream's order first


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**32), flips=st.integers(1, 4), cut=st.integers(-3, 3))
def test_mutated_agent_frames_answer_as_strictly(seed, flips, cut):
    rng = random.Random(seed)
    frame = bytearray(agent_frames(3)[rng.randrange(3)])
    for _ in range(flips):  # anywhere: the length, the map, the zd head, the DEFLATE bytes
        frame[rng.randrange(len(frame))] = rng.randrange(256)
    if cut < 0:
        frame = frame[:cut]
    else:
        frame += bytes(rng.randrange(256) for _ in range(cut))
    check(bytes(frame))


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=80))
def test_any_bytes_after_the_prefix_answer_as_strictly(tail):
    prefix = agent_frames(1)[0][4:4 + len(cbor2.dumps({"t": "batch", "epoch": EPOCH})) + 3]
    check(framed(prefix + tail))


def test_the_gateway_session_fails_a_refused_direct_batch_and_counts_a_good_one():
    client, server = ClientSession("v", "t", EPOCH), ServerSession(credit=2)
    server.receive(client.data_to_send())
    server.accept(0)
    client.receive(server.data_to_send())
    client.send_batch(readings(1, 2))
    (event,) = server.receive(client.data_to_send())
    assert isinstance(event, BatchReceived) and server.pending == 2
    client.send_batch(readings(3, 1))  # beyond the credit granted
    events = server.receive(client.data_to_send())
    assert isinstance(events[-1], Failed) and server.closed
    assert server.receive(agent_frames(1)[0]) == []  # nothing is parsed once closed


def _opened(credit: int) -> tuple[ClientSession, ServerSession]:
    client, server = ClientSession("v", "t", EPOCH), ServerSession(credit=credit)
    server.receive(client.data_to_send())
    server.accept(0)
    client.receive(server.data_to_send())
    return client, server


@pytest.mark.parametrize("piece", HOSTILE_PIECES[::3], ids=range(len(HOSTILE_PIECES[::3])))
def test_the_sessions_one_batch_is_receives_batch_or_leaves_all_to_receive(piece):
    """`ServerSession.one_batch` (the gateway's call for each chunk) gives the batch
    `receive` gives, counted alike; for a batch beyond the credit, a refused piece, or before
    the welcome it consumes and counts nothing, and `receive` then fails it."""
    client, server = _opened(credit=3)
    twin = _opened(credit=3)[1]
    client.send_batch(readings(1, 2))
    frame = client.data_to_send()
    batch = server.one_batch(frame)
    (event,) = twin.receive(frame)
    assert batch == event.batch and server.pending == twin.pending == 2
    assert not server.has_output()
    client.send_batch(readings(3, 2))  # beyond the credit granted
    beyond = client.data_to_send()
    hostile = framed(cbor2.dumps({"t": "batch", "epoch": EPOCH, "zd": piece}))
    for frame in (beyond, hostile):
        fresh = _opened(credit=3)[1]
        fresh.pending = server.pending
        assert fresh.one_batch(frame) is None
        assert fresh.pending == 2 and not fresh.has_output() and not fresh.closed
        assert isinstance(fresh.receive(frame)[-1], Failed) and fresh.closed
    hello_only = ServerSession()
    hello_only.receive(ClientSession("v", "t", EPOCH).data_to_send())
    assert hello_only.one_batch(agent_frames(1)[0]) is None  # no welcome yet
