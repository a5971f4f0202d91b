"""geostream/1.0's CBOR subset (docs/protocol.md §2) and the reading schema's type checks (§4):
what a hostile peer can put in a message is refused while decoding or reading by reading."""

from __future__ import annotations

import concurrent.futures
import math
import struct

import cbor2
import pytest

from geostream.codec import FrameDecoder, decode_payload
from geostream.deflate import Deflater, Inflater
from geostream.errors import ErrorCode, ProtocolError
from geostream.limits import MAX_CBOR_DEPTH, MAX_MESSAGE_BYTES, TS_MAX_AHEAD_MS, TS_MIN_MS
from geostream.schema import DEFAULT_WINDOW, TimeWindow, content_problem, json_safe, value_problem
from geostream.strict_cbor import loads

NOW = 1_800_000_000_000


def tagged(tag: int, item: bytes = b"\x00") -> bytes:
    if tag < 24:
        return bytes([0xC0 | tag]) + item
    for ai, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if tag < 1 << (8 * width):
            return bytes([0xC0 | ai]) + tag.to_bytes(width, "big") + item
    raise ValueError(tag)


def malformed(data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        loads(data)
    assert info.value.code is ErrorCode.MALFORMED
    return info.value.reason


def test_every_tag_is_refused_whatever_its_number():
    # every number up to 1100 (cbor2's built-in decoders all live there), then the far ones
    for tag in [*range(1100), 1004, 55799, 2**16 - 1, 2**32 - 1, 2**64 - 1]:
        assert "tag" in malformed(tagged(tag)), tag


def test_value_sharing_never_builds_the_shared_structure():
    assert "tag" in malformed(bytes.fromhex("d81ca16161d81d00"))  # a map holding itself
    assert "tag" in malformed(bytes.fromhex("a16161") + bytes.fromhex("d81c8100"))


def test_nesting_is_bounded_before_anything_deep_is_built():
    # MAX_CBOR_DEPTH containers one inside the other, not one more
    assert loads(b"\x81" * MAX_CBOR_DEPTH + b"\x00") is not None
    assert "depth" in malformed(b"\x81" * (MAX_CBOR_DEPTH + 1) + b"\x00")
    assert "depth" in malformed(b"\x81" * 10_000 + b"\x00")
    assert "depth" in malformed(b"\xa1\x61a" * 10_000 + b"\x00")


@pytest.mark.parametrize("data", [
    b"\x9f\x00\xff",                   # indefinite array
    b"\x7f\x61a\xff",                  # indefinite text
    b"\xa2\x61a\x00\x61a\x01",         # duplicate key
    b"\xa1\x01\x00",                   # integer key
    b"\xa1\x81\x00\x00",               # array key
    b"\x00\x00",                       # trailing bytes
    b"\x9b" + (2**40).to_bytes(8, "big"),  # a huge declared length, nothing behind it
    b"\x7b" + (2**62).to_bytes(8, "big") + b"a",
    b"\xff",
])
def test_other_departures_from_the_subset_are_malformed(data):
    malformed(data)


def test_a_refused_item_leaves_nothing_behind_for_the_next():
    """The decoder is kept between messages (strict_cbor: one per thread): whatever the last
    one was refused for, the next is decoded alone and as strictly."""
    good = cbor2.dumps({"t": "ack", "ranges": [[1, 2]]})
    for bad in (b"\x81" * (MAX_CBOR_DEPTH + 1) + b"\x00", bytes.fromhex("d81ca16161d81d00"),
                b"\x9f\x00\xff", b"\xa2\x61a\x00\x61a\x01", b"\x00\x00", b"\x82\x81",
                b"\xa1\x61a" + tagged(28, b"\x81" * (MAX_CBOR_DEPTH - 2) + b"\x00")):
        malformed(bad)
        assert loads(good) == {"t": "ack", "ranges": [[1, 2]]}
        assert loads(b"\x81" * MAX_CBOR_DEPTH + b"\x00") is not None
        assert "depth" in malformed(b"\x81" * (MAX_CBOR_DEPTH + 1) + b"\x00")
        assert "tag" in malformed(tagged(28))


def test_threads_decode_apart():
    items = [cbor2.dumps({"n": i, "s": "x" * i}) for i in range(200)]

    def decode_all(_):
        return [loads(item)["n"] for item in items]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for out in pool.map(decode_all, range(8)):
            assert out == list(range(200))


def frame(obj) -> bytes:
    payload = cbor2.dumps(obj)
    return struct.pack(">I", len(payload)) + payload


def test_tags_inside_a_compressed_batch_are_refused():
    deflater = Deflater()
    readings = cbor2.dumps([{"q": 1, "ts": NOW, "k": "can", "bus": "b",
                             "sig": {"x": 1}}]).replace(b"\xa1\x61x\x01",
                                                        bytes.fromhex("d81ca16161d81d00"))
    payload = cbor2.dumps({"t": "batch", "epoch": 1, "z": deflater.piece(readings)})
    with pytest.raises(ProtocolError) as info:
        decode_payload(payload, Inflater(MAX_MESSAGE_BYTES))
    assert info.value.code is ErrorCode.MALFORMED and "tag" in info.value.reason


def test_integers_beyond_the_protocol_are_refused_in_the_envelope():
    for q in (2**63, 2**64 - 1, -1):
        with pytest.raises(ProtocolError):
            FrameDecoder().feed(frame({"t": "batch", "epoch": 1,
                                       "readings": [{"q": q, "ts": NOW, "k": "pos"}]}))


def pos(**kw) -> dict:
    return {"q": 1, "ts": NOW, "k": "pos", "lat": 52.0, "lon": 4.0, **kw}


def rule(r: dict, now: int | None = NOW, window: TimeWindow = DEFAULT_WINDOW) -> str | None:
    problem = content_problem(r, now, window)
    return None if problem is None else problem.rule


def test_a_well_formed_reading_of_each_kind_passes():
    assert rule(pos(alt=3.5, spd=50, crs=359.9, fix=1, mode=3, sat=12, hdop=0.8,
                    clk=-120)) is None
    assert rule({"q": 1, "ts": NOW, "k": "can", "bus": "j1939",
                 "sig": {"EngineSpeed": 812.5, "Gear": "D", "Odo": 2**40}}) is None
    assert rule({"q": 1, "ts": NOW, "k": "evt", "name": "dtc", "data": {
        "bus": "b", "proto": "j1939", "src": 0, "set": "active",
        "dtcs": [{"spn": 100, "fmi": 1, "oc": 3}], "lamps": {"mil": 1}}}) is None
    assert rule({"q": 1, "ts": NOW, "k": "evt", "name": "journal-recreated",
                 "data": {"moved_aside": None}}) is None


@pytest.mark.parametrize("bad", [
    "text", True, None, b"\x00", [1.0], {"a": 1}, math.nan, math.inf, -math.inf, 2**64,
])
def test_every_position_field_is_type_checked(bad):
    for key in ("lat", "lon"):
        assert rule(pos(**{key: bad})) == "position", (key, bad)
    for key in ("alt", "spd", "crs", "hdop", "fix", "mode", "sat", "clk"):
        if bad is None:
            continue  # an optional quantity may be absent (null: the same)
        assert rule(pos(**{key: bad})) == "quantity", (key, bad)


def test_integer_codes_and_quantities_are_bounded():
    assert rule(pos(fix=256)) == "quantity" and rule(pos(sat=-1)) == "quantity"
    assert rule(pos(spd=1e300)) == "quantity"
    assert rule(pos(fix=1.0)) == "quantity"  # a code is an integer


@pytest.mark.parametrize("sig", [
    None, [], "x", {"a": math.nan}, {"a": math.inf}, {"a": None}, {"a": True}, {"a": [1]},
    {"a": {"b": 1}}, {"a": b"\x00"}, {"a": 2**64}, {"a": "x" * 5000}, {"x" * 500: 1},
    {b"k": 1}, {str(i): i for i in range(2000)},
])
def test_signals_are_type_checked(sig):
    assert rule({"q": 1, "ts": NOW, "k": "can", "bus": "b", "sig": sig}) == "signals"


def test_a_bus_name_is_short_text():
    for bus in (1, ["b"], "b" * 500):
        assert rule({"q": 1, "ts": NOW, "k": "can", "bus": bus, "sig": {}}) == "signals"


@pytest.mark.parametrize("event", [
    {"name": 5}, {"name": ""}, {"name": "x" * 500}, {"name": "e", "data": []},
    {"name": "e", "data": {"a": math.nan}}, {"name": "e", "data": {"a": [math.inf]}},
    {"name": "e", "data": {"a": {"b": b"\x01"}}}, {"name": "e", "data": {"a": 2**64}},
    {"name": "e", "data": {"a": list(range(2000))}}, {"name": "e", "data": {"a": "x" * 5000}},
])
def test_events_are_type_checked_all_the_way_down(event):
    assert rule({"q": 1, "ts": NOW, "k": "evt", **event}) == "event"


def test_timestamps_outside_the_sane_window_are_invalid():
    assert rule(pos(ts=TS_MIN_MS - 1)) == "time"
    assert rule(pos(ts=TS_MIN_MS)) is None
    assert rule(pos(ts=NOW + TS_MAX_AHEAD_MS)) is None
    assert rule(pos(ts=NOW + TS_MAX_AHEAD_MS + 1)) == "time"
    assert rule(pos(ts=253_402_300_800_000)) == "time"  # the year 10000
    narrow = TimeWindow(min_ms=NOW - 1000, max_ahead_ms=0)
    assert rule(pos(ts=NOW - 1001), window=narrow) == "time"
    assert rule(pos(ts=NOW + 1), window=narrow) == "time"
    assert rule(pos(ts=NOW + 1), now=None) is None  # no clock given: no window


def test_json_safe_keeps_what_was_refused_in_a_form_every_store_takes():
    odd = {"lat": math.nan, "b": b"\x01\x02", "big": 2**64, 1: [math.inf, None, True],
           "t": cbor2.CBORSimpleValue(16)}
    safe = json_safe(odd)
    assert safe == {"lat": "nan", "b": "0102", "big": str(2**64), "1": ["inf", None, True],
                    "t": "CBORSimpleValue(16)"}
    assert value_problem(safe) is None
