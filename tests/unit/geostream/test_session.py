"""Sans-IO protocol objects: range sets, framing, and the two session state machines."""

from __future__ import annotations

import struct

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geostream.codec import MAX_MESSAGE_BYTES, FrameDecoder, encode
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Ack, Batch, Command, CommandAck, Error, Hello, Welcome
from geostream.ranges import RangeSet
from geostream.session import (
    Acknowledged,
    BatchReceived,
    ClientSession,
    CommandReceived,
    HelloReceived,
    PeerError,
    ServerSession,
    Welcomed,
)


def pos(q: int, ts: int = 1_700_000_000_000) -> dict:
    return {"q": q, "ts": ts + q, "k": "pos", "lat": 53.5, "lon": 9.9}


@given(st.lists(st.integers(0, 200), max_size=80))
def test_rangeset_matches_a_python_set(values):
    rs = RangeSet()
    for v in values:
        rs.add(v)
    assert {v for v in range(0, 202) if v in rs} == set(values)
    assert rs.count() == len(set(values))
    spans = list(rs)
    assert all(a <= b for a, b in spans)
    assert all(b1 + 1 < a2 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))


@given(st.sets(st.integers(1, 100)), st.integers(0, 100))
def test_contiguous_from_and_discard(values, start):
    rs = RangeSet.from_values(values)
    n = rs.contiguous_from(start)
    assert all(v in values for v in range(start + 1, n + 1))
    assert n + 1 not in values or n + 1 <= start
    rs.discard_through(n)
    assert {v for v in range(0, 102) if v in rs} == {v for v in values if v > n}


ALL_MESSAGES = [
    Hello(vehicle="truck-1", token="t" * 43, epoch=2**61, agent="fleet-agent/0.1", acked=7),
    Welcome(credit=4096, max_batch_bytes=65536, time=1_700_000_000_000),
    Batch(epoch=5, readings=(pos(1), {"q": 2, "ts": 3, "k": "can", "bus": "can0",
                                      "sig": {"EngineSpeed": 1200.5, "Gear": "D"}})),
    Ack(epoch=5, through=10, ranges=((12, 14), (20, 20)), credit=100),
    Error(code=5, reason="unknown vehicle or wrong token", fatal=True),
    Command(id=3, name="set-config", args={"rate_hz": 1}),
    CommandAck(id=3, ok=False, detail="unsupported"),
]


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_byte_by_byte(msg):
    data = encode(msg)
    dec = FrameDecoder()
    out = []
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert out == [msg]
    assert dec.buffered == 0


def _frame(obj) -> bytes:
    payload = cbor2.dumps(obj)
    return struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize("data,code", [
    (struct.pack(">I", MAX_MESSAGE_BYTES + 1), ErrorCode.TOO_LARGE),
    (struct.pack(">I", 0), ErrorCode.TOO_LARGE),
    (struct.pack(">I", 3) + b"\xff\xff\xff", ErrorCode.MALFORMED),
    (_frame([1, 2, 3]), ErrorCode.MALFORMED),
    (_frame({"no": "type"}), ErrorCode.MALFORMED),
    (_frame({"t": "batch", "epoch": 1, "readings": []}), ErrorCode.MALFORMED),
    (_frame({"t": "batch", "epoch": 1, "readings": [pos(1), pos(1)]}), ErrorCode.MALFORMED),
    (_frame({"t": "batch", "epoch": -1, "readings": [pos(1)]}), ErrorCode.MALFORMED),
    (_frame({"t": "batch", "epoch": 1, "readings": [{**pos(1), "q": 0}]}), ErrorCode.MALFORMED),
    (_frame({"t": "batch", "epoch": 1, "readings": [{**pos(1), "k": "x"}]}),
     ErrorCode.MALFORMED),
    (_frame({"t": "hello", "v": 1, "vehicle": "a b", "token": "x", "epoch": 1}),
     ErrorCode.MALFORMED),
    (_frame({"t": "ack", "epoch": 1, "through": 0, "ranges": [[5, 3]], "credit": 1}),
     ErrorCode.MALFORMED),
    (_frame({"t": "ack", "epoch": 1, "through": 0, "ranges": [[1, 3], [3, 4]], "credit": 1}),
     ErrorCode.MALFORMED),
])
def test_bad_frames_raise_the_documented_code(data, code):
    with pytest.raises(ProtocolError) as exc:
        FrameDecoder().feed(data)
    assert exc.value.code is code


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_raise_protocol_error(data):
    try:
        FrameDecoder().feed(data)
    except ProtocolError:
        pass


def handshake(acked: int = 0) -> tuple[ClientSession, ServerSession]:
    client, server = ClientSession("truck-1", "tok", epoch=9, acked_through=acked), ServerSession(
        credit=3)
    events = server.receive_data(client.data_to_send())
    assert events == [HelloReceived(Hello("truck-1", "tok", 9, "fleet-agent", acked, zdict=(1,)))]
    server.accept(now_ms=123)
    assert client.receive_data(server.data_to_send()) == [Welcomed(3, 65536, 123)]
    return client, server


def test_an_accepted_session_keeps_no_token():
    """After the welcome the gateway's session holds the hello's vehicle and epoch, not the
    vehicle's secret token nor the agent's name (memory per connected vehicle, and a secret
    not kept longer than authentication needs it)."""
    client, server = handshake()
    assert (server.hello.vehicle, server.hello.epoch) == ("truck-1", 9)
    assert server.hello.token == "" and server.hello.agent == ""
    client.send_batch([pos(1)])
    [ev] = server.receive_data(client.data_to_send())  # batches still checked against it
    assert isinstance(ev, BatchReceived)


def test_credit_bounds_what_is_in_flight_and_acks_release_it():
    client, server = handshake()
    assert client.credit_available == 3
    client.send_batch([pos(1), pos(2)])
    assert client.credit_available == 1
    [ev] = server.receive_data(client.data_to_send())
    assert isinstance(ev, BatchReceived) and [r["q"] for r in ev.batch.readings] == [1, 2]
    server.committed([1, 2])
    [ack] = client.receive_data(server.data_to_send())
    assert ack == Acknowledged(epoch=9, through=2, ranges=(), newly_acked=2)
    assert client.in_flight == set() and client.credit_available == 3


def test_live_first_reading_is_acked_selectively_then_cumulatively():
    client, server = handshake(acked=10)
    client.send_batch([pos(20)])           # the newest position goes first
    client.send_batch([pos(11), pos(12)])  # then the backlog
    server.receive_data(client.data_to_send())
    server.committed([20])
    [a1] = client.receive_data(server.data_to_send())
    assert (a1.through, a1.ranges) == (10, ((20, 20),))
    server.committed([11, 12])
    [a2] = client.receive_data(server.data_to_send())
    assert (a2.through, a2.ranges) == (12, ((20, 20),))
    assert client.in_flight == set()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True),
                min_size=1, max_size=12),
       st.lists(st.integers(1, 64), min_size=12, max_size=12))
def test_a_committed_batch_is_acked_as_its_sequence_numbers_are(batches, credits):
    """`committed_batch` (the gateway's call, with a path of its own for a one-reading batch
    next in order) leaves the session and its acks as `committed` of the batch's numbers:
    in order, out of order, again after their ack, with and without numbers held."""
    fast, slow = handshake(acked=2)[1], handshake(acked=2)[1]
    for seqs, credit in zip(batches, credits, strict=False):
        batch = Batch(epoch=9, readings=tuple(pos(q) for q in seqs))
        fast.pending = slow.pending = len(seqs) + 1
        fast.committed_batch(batch, credit)
        slow.committed(seqs, credit)
        assert fast.data_to_send() == slow.data_to_send()
        assert ((fast.through, fast.pending, fast.credit, fast.max_credit_granted)
                == (slow.through, slow.pending, slow.credit, slow.max_credit_granted))


def test_unknown_message_type_is_answered_and_the_session_goes_on():
    client, server = handshake()
    payload = cbor2.dumps({"t": "future-thing", "x": 1})
    server.receive_data(struct.pack(">I", len(payload)) + payload)
    [err] = client.receive_data(server.data_to_send())
    assert err == PeerError(ErrorCode.UNKNOWN_TYPE, err.reason, False)
    client.send_batch([pos(1)])
    assert isinstance(server.receive_data(client.data_to_send())[0], BatchReceived)


@pytest.mark.parametrize("first", [
    Batch(epoch=9, readings=(pos(1),)),
    CommandAck(id=1, ok=True),
])
def test_nothing_but_hello_before_welcome(first):
    server = ServerSession()
    with pytest.raises(ProtocolError) as exc:
        server.receive_data(encode(first))
    assert exc.value.code is ErrorCode.UNEXPECTED
    server.fail(exc.value)
    assert server.closed
    assert FrameDecoder().feed(server.data_to_send())[0].code == ErrorCode.UNEXPECTED


def test_batch_for_another_epoch_is_forbidden():
    client, server = handshake()
    with pytest.raises(ProtocolError) as exc:
        server.receive_data(encode(Batch(epoch=10, readings=(pos(1),))))
    assert exc.value.code is ErrorCode.FORBIDDEN


def test_commands_reach_the_agent_and_acks_reach_the_gateway():
    client, server = handshake()
    server.send_command(Command(id=4, name="ping", args={}))
    [ev] = client.receive_data(server.data_to_send())
    assert isinstance(ev, CommandReceived) and ev.command.id == 4
    client.acknowledge_command(4, False, "unsupported")
    [ack] = server.receive_data(client.data_to_send())
    assert ack.ack == CommandAck(id=4, ok=False, detail="unsupported")


def test_has_output_says_whether_there_is_anything_to_send_or_close():
    client, server = handshake()
    assert not server.has_output() and not client.has_output()
    client.send_batch([pos(1)])
    assert client.has_output()
    server.receive_data(client.data_to_send())
    assert not server.has_output()  # a batch is answered at its commit
    server.committed([1])
    assert server.has_output()
    assert server.data_to_send() and not server.has_output()
    mystery = cbor2.dumps({"t": "mystery"})
    server.receive_data(len(mystery).to_bytes(4, "big") + mystery)
    assert server.has_output()  # unknown-type answered
    server.data_to_send()
    server.fail(ProtocolError(ErrorCode.MALFORMED, "bad"))
    server.data_to_send()
    assert server.has_output() and server.close_expected() is not None  # still to close


def test_batches_committed_together_are_acknowledged_once_in_their_place():
    client, server = handshake()
    client.send_batch([pos(1)])
    client.send_batch([pos(2)])
    client.send_batch([pos(3)])
    assert len(server.receive_data(client.data_to_send())) == 3
    server.committed([1])
    server.committed([3])
    server.committed([2])
    assert client.receive_data(server.data_to_send()) == [
        Acknowledged(epoch=9, through=3, ranges=(), newly_acked=3)]  # one ack for three
    client.send_batch([pos(4)])
    server.receive_data(client.data_to_send())
    server.committed([4])
    server.fail(ProtocolError(ErrorCode.INVALID_READING, "after the commit"))
    ack, err = client.receive_data(server.data_to_send())  # the ack keeps its place
    assert ack == Acknowledged(epoch=9, through=4, ranges=(), newly_acked=1)
    assert isinstance(err, PeerError) and err.code == ErrorCode.INVALID_READING
    assert server.data_to_send() == b""  # owed once, sent once
