"""The agent's status report (docs/protocol.md §3 status): wire form, limits, session rules."""

from __future__ import annotations

import cbor2
import pytest

from geostream.codec import FrameDecoder, encode
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Status
from geostream.ranges import RangeSet
from geostream.session import ServerSession, StatusReceived
from tests.unit.geostream.test_session import handshake

REPORT = Status(time=1_700_000_000_000, backlog=42, journal_bytes=123_456,
                sources=(("can:truck", "up"), ("gps", "fix")), oldest=1_699_999_990_000,
                dropped=3, rtt_ms=48, uptime_s=3600)


def test_status_as_the_spec_writes_it_and_back():
    frame = encode(REPORT)
    # the map as docs/protocol.md lists it, read with cbor2 (not with our decoder)
    body = cbor2.loads(frame[4:])
    assert body == {"t": "status", "time": 1_700_000_000_000, "backlog": 42,
                    "journal_bytes": 123_456, "dropped": 3, "oldest": 1_699_999_990_000,
                    "rtt_ms": 48, "uptime_s": 3600,
                    "sources": {"gps": "fix", "can:truck": "up"}}
    assert len(frame) < 160  # "small": about 100 bytes every 30 s
    [back] = FrameDecoder().feed(frame)
    assert back == REPORT
    minimal = Status(time=1, backlog=0, journal_bytes=0)
    assert FrameDecoder().feed(encode(minimal)) == [minimal]


@pytest.mark.parametrize("bad", [
    {"backlog": -1},
    {"sources": {"gps": 1}},
    {"sources": {f"s{i}": "up" for i in range(17)}},
    {"sources": {"x" * 33: "up"}},
])
def test_an_ill_typed_status_is_malformed(bad):
    body = {"t": "status", "time": 1, "backlog": 0, "journal_bytes": 0, **bad}
    payload = cbor2.dumps(body)
    with pytest.raises(ProtocolError) as exc:
        FrameDecoder().feed(len(payload).to_bytes(4, "big") + payload)
    assert exc.value.code is ErrorCode.MALFORMED


def test_status_after_welcome_is_an_event_before_it_unexpected():
    client, server = handshake()
    client.send_status(REPORT)
    assert server.receive_data(client.data_to_send()) == [StatusReceived(REPORT)]
    with pytest.raises(ProtocolError) as exc:
        ServerSession().receive_data(encode(REPORT))
    assert exc.value.code is ErrorCode.UNEXPECTED


def _frame(m: dict) -> bytes:
    payload = cbor2.dumps(m)
    return len(payload).to_bytes(4, "big") + payload


def test_revision_2_keys_as_the_spec_writes_them_and_back():
    from geostream.messages import CommandAck, Hello, Welcome

    hello = Hello("v", "t", 7, commands=("ping", "restart"), features=("act",))
    assert FrameDecoder().feed(encode(hello)) == [hello]
    assert FrameDecoder().feed(_frame({"t": "hello", "v": 1, "vehicle": "v", "token": "t",
                                       "epoch": 7}))[0].commands is None  # a 1.0 agent
    welcome = Welcome(credit=5, max_batch_bytes=100, time=1, features=("act",))
    assert FrameDecoder().feed(encode(welcome)) == [welcome]
    ack = CommandAck(3, True, "ok", {"position": {"lat": 1.5}})
    assert FrameDecoder().feed(encode(ack)) == [ack]


@pytest.mark.parametrize("message, expected", [
    ({"t": "hello", "v": 1, "vehicle": "v", "token": "t", "epoch": 7,
      "commands": ["x"] * 65}, "at most 64"),
    ({"t": "hello", "v": 1, "vehicle": "v", "token": "t", "epoch": 7, "commands": [""]},
     "1..64"),
    ({"t": "hello", "v": 1, "vehicle": "v", "token": "t", "epoch": 7, "features": "act"},
     "features"),
    ({"t": "command-ack", "id": 1, "ok": True, "result": [1]}, "map"),
    ({"t": "command-ack", "id": 1, "ok": True, "result": {"b": ["y" * 1000] * 17}},
     "exceeds"),
])
def test_revision_2_keys_out_of_bounds_are_malformed(message, expected):
    with pytest.raises(ProtocolError) as exc:
        FrameDecoder().feed(_frame(message))
    assert exc.value.code == ErrorCode.MALFORMED and expected in exc.value.reason


@pytest.mark.parametrize("ranges", [(), ((3, 3),), ((3, 5), (8, 8), (10, 2**32))])
@pytest.mark.parametrize("number", [1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32,
                                    2**63 - 1])
def test_the_gateways_ack_encoder_writes_the_ack_message_byte_for_byte(ranges, number):
    from geostream.codec import encode_ack
    from geostream.messages import Ack

    got = encode_ack(number, number, RangeSet(ranges), number)
    assert got == encode(Ack(epoch=number, through=number, ranges=ranges, credit=number))
    assert cbor2.loads(got[4:]) == {"t": "ack", "epoch": number, "through": number,
                                    "ranges": [list(r) for r in ranges], "credit": number}
