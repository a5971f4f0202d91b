"""The agent's direct read of the gateway's usual ack (`plain_ack`, `ClientSession.receive`)
against the general decoder: the same numbers, the same events, and anything that is not
exactly such an ack left to the general path."""

from __future__ import annotations

import struct

import cbor2
import pytest

from geostream.codec import FrameDecoder, encode, encode_ack, plain_ack
from geostream.errors import ErrorCode
from geostream.messages import Ack, Welcome
from geostream.schema import MAX_UINT
from geostream.session import ClientSession, Failed

# each CBOR uint width at its edges (1 byte: < 24, then 1, 2, 4, 8 bytes after the head)
EDGES = (0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, MAX_UINT)


def frame_of(payload: dict) -> bytes:
    return framed(cbor2.dumps(payload))


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("value", EDGES)
def test_the_numbers_are_those_the_general_decoder_reads(value):
    for epoch, through, credit in ((value, 7, 100), (3, value, 64), (1, 2, value)):
        frame = encode_ack(epoch, through, (), credit)
        [general] = FrameDecoder().feed(frame)
        assert general == Ack(epoch, through, (), credit)
        assert plain_ack(frame) == (general.epoch, general.through, general.credit)


def test_anything_else_is_left_to_the_general_path():
    plain = {"t": "ack", "epoch": 5, "through": 9, "ranges": [], "credit": 100}
    frame = encode_ack(5, 9, (), 100)
    assert frame_of(plain) == frame
    others = {
        "ranges": encode_ack(5, 9, ((11, 12),), 100),
        "a byte more": frame + b"\x00",
        "a byte less": frame[:-1],
        "the header's length wrong": struct.pack(">I", len(frame) - 3) + frame[4:],
        # 9 in two bytes instead of one: CBOR allows it, `encode_ack` never writes it
        "a number not in its shortest form": framed(frame[4:].replace(b"through\x09",
                                                                      b"through\x18\x09")),
        "a number beyond MAX_UINT": frame_of({**plain, "through": MAX_UINT + 1}),
        "a negative number": frame_of({**plain, "credit": -1}),
        "keys in another order": frame_of({"t": "ack", "through": 9, "epoch": 5, "ranges": [],
                                           "credit": 100}),
        "another message": encode(Welcome(credit=10, max_batch_bytes=1000, time=1)),
        "empty": b"",
    }
    for what, other in others.items():
        assert other != frame, what
        assert plain_ack(other) is None, what


def session_with(in_flight: set[int], epoch: int = 5) -> ClientSession:
    s = ClientSession("v", "t", epoch)
    s.data_to_send()
    s.receive(encode(Welcome(credit=100, max_batch_bytes=65536, time=1)))
    s.in_flight = set(in_flight)
    return s


@pytest.mark.parametrize("epoch,through", [(5, 3), (5, 10), (5, 0), (6, 3)])
def test_a_session_reads_it_as_it_reads_it_in_pieces(epoch, through):
    """The same ack whole (the direct read) and split in two (the decoder's buffered path):
    the same events, in-flight set, credit, closing and error queued."""
    frame = encode_ack(epoch, through, (), 77)
    whole, pieces = session_with({1, 2, 3, 4}), session_with({1, 2, 3, 4})
    events = whole.receive(frame)
    assert pieces.receive(frame[:5]) == []
    assert events == pieces.receive(frame[5:])
    assert (whole.in_flight, whole.credit, whole.closed) == (
        pieces.in_flight, pieces.credit, pieces.closed)
    assert whole.data_to_send() == pieces.data_to_send()
    if epoch != 5:
        [failed] = events
        assert type(failed) is Failed and failed.code == ErrorCode.FORBIDDEN


def test_an_ack_before_the_welcome_is_still_refused():
    s = ClientSession("v", "t", 5)
    [failed] = s.receive(encode_ack(5, 1, (), 10))
    assert type(failed) is Failed and failed.code == ErrorCode.UNEXPECTED
