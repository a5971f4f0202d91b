"""The one-expression checks a storm's readings take (`_position_ok`, `_signals_ok`, the
envelope's fast case) decide exactly as the full checks, on generated readings valid and not;
and the rows the schema flattens a reading into are the ones it documents."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geostream import schema
from geostream.errors import ProtocolError
from geostream.limits import MAX_INT, MAX_KEY_CHARS, MAX_TEXT_CHARS, MIN_INT

# every kind of value a hostile map may hold where a number or text belongs, the edges of each
# range among them (a value one step past an edge included)
EDGES = [None, True, False, 0, 1, -1, 255, 256, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1,
         2**64, 90, 90.0, 90.000001, -90.0, -90.5, 180.0, 180.5, -180.0, -181, 1e9, 1e9 + 1,
         -1e9, -1e9 - 1, 1e300, math.nan, math.inf, -math.inf, 0.5, -0.0, "", "x",
         "x" * MAX_KEY_CHARS, "x" * (MAX_KEY_CHARS + 1), "x" * (MAX_TEXT_CHARS + 1), b"\x00",
         [], [1.0], {}, {"a": 1}]
values = st.one_of(st.sampled_from(EDGES), st.floats(), st.integers(),
                   st.text(max_size=3))
QUANTITY_KEYS = [q.wire for q in schema.POSITION_QUANTITIES]


@st.composite
def positions(draw):
    r = {"q": 1, "ts": 5, "k": "pos",
         "lat": draw(st.one_of(st.floats(-91, 91), values)),
         "lon": draw(st.one_of(st.floats(-181, 181), values))}
    for key in draw(st.lists(st.sampled_from(QUANTITY_KEYS + ["other"]), unique=True)):
        r[key] = draw(st.one_of(values, st.floats(-2e9, 2e9), st.integers(-300, 300)))
    if draw(st.booleans()):  # most: absent or well-typed
        for key in QUANTITY_KEYS:
            r.setdefault(key, draw(st.sampled_from([None, 1, 12.5])))
    return r


keys = st.one_of(st.sampled_from(["EngineSpeed", "", "x" * MAX_KEY_CHARS,
                                  "x" * (MAX_KEY_CHARS + 1)]), st.text(max_size=4),
                 st.binary(max_size=2), st.integers(0, 3))


@st.composite
def signals(draw):
    r = {"q": 1, "ts": 5, "k": "can"}
    if draw(st.booleans()):
        r["bus"] = draw(st.one_of(values, st.just("j1939")))
    r["sig"] = draw(st.one_of(
        st.dictionaries(keys, st.one_of(values, st.floats(), st.integers()), max_size=6),
        values))
    return r


@settings(max_examples=600, deadline=None)
@given(r=positions())
def test_a_position_passes_the_fast_check_exactly_when_the_full_one_finds_nothing(r):
    assert schema._position_ok(r) == (schema._position_problem(r) is None)
    assert schema.content_problem(r) == schema._position_problem(r)
    # the gateway's one look: the row's values exactly when valid
    values = schema.position_values(r)
    if schema._position_problem(r) is None:
        assert values == schema.row_values(r)[:-1]
    else:
        assert values is None


@settings(max_examples=600, deadline=None)
@given(r=signals())
def test_a_can_reading_passes_the_fast_check_exactly_when_the_full_one_finds_nothing(r):
    assert schema._signals_ok(r) == (schema._signals_problem(r) is None)
    assert schema.content_problem(r) == schema._signals_problem(r)


def test_a_signal_map_of_too_many_entries_takes_the_full_check():
    r = {"q": 1, "ts": 5, "k": "can", "sig": {str(i): i for i in range(2000)}}
    assert not schema._signals_ok(r)
    assert schema.content_problem(r).rule == "signals"


def _envelope_answer(check, r):
    try:
        return check(r)
    except ProtocolError as exc:
        return (exc.code, str(exc))


def _slow_check_reading(r):
    """The envelope check as written before its fast case (the reference)."""
    if not isinstance(r, dict):
        raise ProtocolError(schema.ErrorCode.MALFORMED, "a reading must be a map")
    if schema.uint(r, schema.SEQ) == 0:
        raise ProtocolError(schema.ErrorCode.MALFORMED, "'q' starts at 1")
    schema.uint(r, schema.TIME)
    if r.get(schema.KIND) not in schema.READING_KINDS:
        raise ProtocolError(schema.ErrorCode.MALFORMED,
                            f"unknown reading kind {r.get(schema.KIND)!r}")
    return r


@settings(max_examples=600, deadline=None)
@given(q=st.one_of(st.integers(-1, 2), values), ts=st.one_of(st.integers(-1, 2), values),
       k=st.one_of(st.sampled_from(schema.READING_KINDS), values),
       drop=st.sampled_from([None, None, None, "q", "ts", "k"]),
       as_list=st.sampled_from([False] * 5 + [True]))
def test_the_envelope_check_answers_as_before(q, ts, k, drop, as_list):
    r = {"q": q, "ts": ts, "k": k}
    if drop:
        del r[drop]
    if as_list:
        r = list(r.items())
    assert _envelope_answer(schema.check_reading, r) == _envelope_answer(_slow_check_reading, r)


@pytest.mark.parametrize("wire, expected", [
    ({"q": 3, "ts": 5, "k": "pos", "lat": 1.5, "lon": 2.5, "spd": 4.0, "sat": 9, "clk": 1},
     {"lat": 1.5, "lon": 2.5, "alt_m": None, "speed_kmh": 4.0, "course_deg": None,
      "fix": None, "sats": 9, "hdop": None, "data": None}),
    ({"q": 3, "ts": 5, "k": "can", "bus": "b", "sig": {"A": 1}}, {"data": {"bus": "b", "A": 1}}),
    ({"q": 3, "ts": 5, "k": "can", "sig": {"A": 1}}, {"data": {"A": 1}}),
    ({"q": 3, "ts": 5, "k": "evt", "name": "dtc", "data": {"x": 1}},
     {"data": {"name": "dtc", "x": 1}}),
    ({"q": 3, "ts": 5, "k": "evt", "name": "e"}, {"data": {"name": "e"}}),
    ({"q": 3, "ts": 5, "k": "act", "action": {"key": "k"}}, {"data": {"key": "k"}}),
])
def test_rows_are_the_documented_columns(wire, expected):
    assert schema.row_fields(wire) == expected
    values = schema.row_values(wire)
    assert len(values) == len(schema.ROW_COLUMNS)
    assert {c: v for c, v in zip(schema.ROW_COLUMNS, values, strict=True)
            if c in expected} == expected
    assert all(v is None for c, v in zip(schema.ROW_COLUMNS, values, strict=True)
               if c not in expected)


def test_the_bounds_the_fast_check_relies_on():
    # an int inside a float quantity's bounds is a BIGINT (the full check's `_number`)
    for _, low, high in schema._FLOAT_RANGE:
        assert MIN_INT <= low and high <= MAX_INT
