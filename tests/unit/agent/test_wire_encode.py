"""The hand CBOR encoder (agent/wire_encode.py) vs cbor2 and `to_wire()`, and in the journal."""

from __future__ import annotations

import math
import sqlite3

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.journal import DrainState, Journal
from agent.readings import Event, Position, Signals
from agent.wire_encode import encode

# ints across every argument width, both signs, and beyond 64 bits (cbor2's bignum fallback)
INTS = st.one_of(st.integers(-30, 30), st.integers(-2**64 - 5, 2**64 + 5),
                 st.sampled_from([23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
                                  2**64, -24, -25, -256, -257, -2**32, -2**32 - 1, -2**64,
                                  -2**64 - 1]))
FLOATS = st.one_of(st.floats(allow_nan=False),  # includes ±inf, ±0.0, subnormals, ±max
                   st.sampled_from([5e-324, -5e-324, 1.7976931348623157e308, -0.0, 0.5]))
NUMBERS = st.one_of(FLOATS, INTS)


def _opt(strategy):
    return st.one_of(st.none(), strategy)


positions = st.builds(
    Position, ts_ms=st.one_of(INTS, st.integers(1_600_000_000_000, 2_000_000_000_000)),
    lat=NUMBERS, lon=NUMBERS, alt_m=_opt(NUMBERS), speed_kmh=_opt(NUMBERS),
    course_deg=_opt(NUMBERS), fix=_opt(st.one_of(INTS, st.booleans())), mode=_opt(INTS),
    sats=_opt(INTS), hdop=_opt(FLOATS), clock_offset_ms=_opt(INTS))
signals = st.builds(
    Signals, ts_ms=INTS, bus=st.text(max_size=12),
    values=st.dictionaries(st.text(max_size=20),
                           st.one_of(NUMBERS, st.text(max_size=30), st.booleans()),
                           max_size=30))


def _same(a, b) -> bool:
    """Equal, with the same types all the way down (1 == 1.0 == True for ==)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@settings(max_examples=3000, deadline=None)
@given(positions)
def test_position_decodes_to_its_wire_map(p):
    payload = encode(p)
    assert _same(cbor2.loads(payload), p.to_wire())
    if all(not math.isinf(v) for v in (p.lat, p.lon, p.alt_m, p.speed_kmh, p.course_deg,
                                       p.hdop) if type(v) is float):
        assert payload == cbor2.dumps(p.to_wire())  # cbor2 writes inf as a half float


@settings(max_examples=1500, deadline=None)
@given(signals)
def test_signals_decode_to_their_wire_map(s):
    assert _same(cbor2.loads(encode(s)), s.to_wire())


def test_common_shapes_are_byte_identical_to_cbor2():
    for r in (Position(ts_ms=1_750_000_000_000, lat=59.3, lon=18.0, speed_kmh=52.5,
                       course_deg=181.0, sats=9, hdop=0.9),
              Position(ts_ms=1_750_000_000_000, lat=-33.9, lon=151.2, alt_m=12.5, fix=4,
                       mode=3, sats=31, clock_offset_ms=-1234),
              Signals(ts_ms=1_750_000_000_000, bus="can0", values={"rpm": 1500, "t": -40.5,
                                                                    "gear": "D"}),
              Signals(ts_ms=0, bus="can1", values={}),
              Event(ts_ms=5, name="journal-recreated", data={"old": "x"})):
        assert encode(r) == cbor2.dumps(r.to_wire())


def test_journal_payloads_decode_and_drain_unchanged(tmp_path):
    path = str(tmp_path / "j.sqlite")
    readings = [Position(ts_ms=1_750_000_000_000 + i, lat=59.3 + i * 1e-6, lon=18.0,
                         speed_kmh=float(i), sats=i % 40, clock_offset_ms=i - 50)
                if i % 3 == 0 else
                Signals(ts_ms=1_750_000_000_000 + i, bus="can0",
                        values={"rpm": 1500 + i, "coolant": 90.5, "mode": "eco"})
                for i in range(300)]
    j = Journal(path)
    seqs = j.append(readings)
    db = sqlite3.connect(path)
    stored = db.execute("SELECT seq, ts_ms, kind, payload FROM readings ORDER BY seq").fetchall()
    db.close()
    assert [s for s, *_ in stored] == seqs
    for (_, ts, kind, payload), r in zip(stored, readings, strict=True):
        wire = r.to_wire()
        assert (ts, kind) == (wire["ts"], wire["k"])
        assert payload == cbor2.dumps(wire)
    sent = []
    drain = DrainState(j.acked_through())
    while batch := j.next_batch(drain, 64, 65536):
        sent += cbor2.loads(batch.cbor)
    assert sorted(sent, key=lambda w: w["q"]) == [
        {**r.to_wire(), "q": q} for q, r in zip(seqs, readings, strict=True)]
    j.close()
