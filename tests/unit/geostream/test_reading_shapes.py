"""A readings array decoded by a learned layout (`geostream.reading_shapes`) is exactly what the
strict decoder builds (values, their types, the keys' order), or the layout declines: for the
agents' positions and CAN snapshots, for every one-byte change of one, and for generated
readings."""

from __future__ import annotations

import math

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geostream import strict_cbor
from geostream.errors import ProtocolError
from geostream.reading_shapes import (
    MAX_MISSES_PER_LENGTH,
    MAX_SHAPE_BYTES,
    MAX_SHAPES,
    ReadingShapes,
)
from loadtest.fleet import SimVehicle


def strict(raw: bytes):
    try:
        return strict_cbor.loads(raw)
    except ProtocolError:
        return None


def same(got, want) -> bool:
    """Equal, in the same key order, of the same types (1 == 1.0 == True in Python; NaN is
    compared by being NaN)."""
    if type(got) is not type(want):
        return False
    if type(want) is dict:
        return list(got) == list(want) and all(same(got[k], want[k]) for k in want)
    if type(want) is list:
        return len(got) == len(want) and all(map(same, got, want))
    if type(want) is float and math.isnan(want):
        return math.isnan(got)
    return got == want


def agent_readings(n: int, kind: str, seed: int = 1) -> list[bytes]:
    sim = SimVehicle("v", "t", 1, 1.0, 0.0, 1_765_000_000_000, seed=seed)
    out = [cbor2.dumps([sim.wire_reading(q)]) for q in range(1, n + 1)]
    return [raw for raw in out if strict(raw)[0]["k"] == kind]


def agent_positions(n: int, seed: int = 1) -> list[bytes]:
    return agent_readings(n, "pos", seed)


def learned(raw: bytes) -> ReadingShapes:
    shapes = ReadingShapes()
    assert shapes.learn(raw, strict(raw))
    return shapes


@pytest.mark.parametrize("kind", ["pos", "can"])
def test_the_agents_readings_decode_by_layout_as_strictly(kind):
    raws = agent_readings(40, kind)
    shapes = learned(raws[0])
    hits = 0
    for raw in raws:
        got = shapes.decode(raw)
        if got is None:  # another layout (a wider `q`): learned once, then decoded
            assert shapes.learn(raw, strict(raw))
            got = shapes.decode(raw)
        hits += 1
        assert same(got, strict(raw))
    assert hits == len(raws) and len(shapes) <= 3


@pytest.mark.parametrize("kind", ["pos", "can"])
def test_every_one_byte_change_decodes_as_strictly_or_declines(kind):
    raw = agent_readings(8, kind)[0]
    shapes = learned(raw)
    declined = decoded = 0
    for i in range(len(raw)):
        for b in range(256):
            if b == raw[i]:
                continue
            mutated = raw[:i] + bytes((b,)) + raw[i + 1:]
            got = shapes.decode(mutated)
            if got is None:
                declined += 1
                continue
            decoded += 1
            want = strict(mutated)
            assert want is not None and same(got, want), (i, b)
    assert declined and decoded  # both happen: a value's bytes change, a key's do not pass


def test_a_layout_declines_what_it_does_not_hold():
    raw = agent_positions(1)[0]
    shapes = learned(raw)
    assert shapes.decode(raw + b"\x00") is None  # another length
    assert shapes.decode(raw[:-1]) is None
    tagged = raw.replace(b"\xfb", b"\xc1", 1)  # a tag where a float's head was
    assert shapes.decode(tagged) is None and strict(tagged) is None
    sat = raw.index(b"csat") + 4
    wide = raw[:sat] + b"\x17" + raw[sat + 1:]  # 23: still in the head
    assert same(shapes.decode(wide), strict(wide))
    beyond = raw[:sat] + b"\x18" + raw[sat + 1:]  # a head that needs a byte after it
    assert shapes.decode(beyond) is None
    negative = raw[:sat] + b"\x29" + raw[sat + 1:]  # -10: another major type
    assert shapes.decode(negative) is None and strict(negative)[0]["sat"] == -10


def test_nested_maps_and_negative_integers_are_learned():
    raw = cbor2.dumps([{"ts": 5, "k": "can", "bus": "can0", "sig": {"a": 1.5, "b": -3,
                                                                   "c": -300, "d": "on"},
                        "q": 1}])
    shapes = learned(raw)
    later = cbor2.dumps([{"ts": 6, "k": "can", "bus": "can0", "sig": {"a": -2.5, "b": -20,
                                                                     "c": -1000, "d": "on"},
                          "q": 2}])
    assert same(shapes.decode(later), strict(later))
    other_text = later.replace(b"bon", b"bof")
    assert shapes.decode(other_text) is None


def test_only_one_map_arrays_of_plain_values_are_learned():
    shapes = ReadingShapes()
    deeper = cbor2.dumps([{"ts": 1, "k": "can", "sig": {"a": {"b": 1.5}}, "q": 1}])
    two = cbor2.dumps([{"q": 1, "k": "pos"}, {"q": 2, "k": "pos"}])
    array = cbor2.dumps([{"q": 1, "k": "pos", "alt": [3]}])
    nan = cbor2.dumps([{"q": 1, "k": "pos", "alt": math.nan}])
    data = cbor2.dumps([{"q": 1, "k": "pos", "alt": b"x"}])
    for raw in (deeper, two, array, nan, data, cbor2.dumps({"q": 1}), cbor2.dumps([1])):
        assert not shapes.learn(raw, strict(raw))
    assert len(shapes) == 0
    big = cbor2.dumps([{"q": 1, "k": "pos", "note": "x" * MAX_SHAPE_BYTES}])
    assert not shapes.learn(big, strict(big))


def test_learning_is_bounded():
    shapes = ReadingShapes()
    for i in range(MAX_SHAPES + 5):
        raw = cbor2.dumps([{"q": 1, "k": "pos", f"x{i:03d}": 1.5}])
        shapes.learn(raw, strict(raw))
    assert len(shapes) == MAX_SHAPES
    misses = ReadingShapes()
    raw = cbor2.dumps([{"q": 1, "k": "pos", "alt": [3]}])
    for _ in range(MAX_MISSES_PER_LENGTH):
        assert not misses.learn(raw, strict(raw))
    ok = cbor2.dumps([{"q": 1, "k": "pos", "alt": 30}])
    assert len(ok) == len(raw)
    assert not misses.learn(ok, strict(ok))  # that length is no longer tried


plain = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(width=32), st.floats(width=16), st.integers(0, 2**64 - 1),
    st.integers(-2**64, -1), st.booleans(), st.none(), st.text(max_size=30))
values = st.one_of(plain, st.dictionaries(st.text(min_size=1, max_size=12), plain, max_size=4))


@settings(max_examples=300, deadline=None)
@given(m=st.dictionaries(st.text(min_size=1, max_size=25), values, min_size=1, max_size=10),
       other=st.lists(plain, min_size=40, max_size=40), canonical=st.booleans())
def test_generated_readings_decode_as_strictly(m, other, canonical):
    """Learned from one map, decoding a map of the same keys (its nested maps' too) with other
    values: the same answer as the strict decoder whenever the layout matches (`canonical`:
    floats in their shortest width, keys sorted)."""
    raw = cbor2.dumps([m], canonical=canonical)
    shapes = ReadingShapes()
    if shapes.learn(raw, strict(raw)):
        assert same(shapes.decode(raw), strict(raw))
    values = iter(other)

    def like(v):
        return {k: next(values) for k in v} if type(v) is dict else next(values)

    again = cbor2.dumps([{k: like(v) for k, v in m.items()}], canonical=canonical)
    got = shapes.decode(again)
    if got is not None:
        assert same(got, strict(again))


@pytest.mark.parametrize("width", [1, 2, 3, 5, 9])
def test_every_width_of_q(width):
    q = {1: 7, 2: 200, 3: 60_000, 5: 70_000, 9: 2**40}[width]
    raw = cbor2.dumps([{"ts": 1_765_000_000_000, "k": "pos", "lat": 1.5, "q": q}])
    shapes = learned(raw)
    later = cbor2.dumps([{"ts": 1_765_000_000_001, "k": "pos", "lat": -2.5, "q": q + 1}])
    assert same(shapes.decode(later), strict(later))
