"""Rows built in bulk (`made`, `made_position`, `from_wire`, `from_row`, PostgreSQL's read-back
view) are the same objects the dataclass builds: equal, hashed alike, frozen."""

import dataclasses
import json
import struct

import pytest

from backend.store.postgres.alerts import PostgresAlerts
from backend.store.rows import StoredReading, made, made_position

FIELDS = ("v1", 7, 3, 1_765_000_000_000, "pos", 53.5, 9.9, 12.5, 50.1, 90.3, 1, 9, 0.9, None, 11)


def test_made_is_the_dataclass_object():
    r = made(*FIELDS)
    plain = StoredReading(*FIELDS)
    assert type(r) is StoredReading
    assert r == plain and hash(r) == hash(plain) and repr(r) == repr(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.seq = 4  # type: ignore[misc]
    assert dataclasses.replace(r, seq=4) == StoredReading(*FIELDS[:2], 4, *FIELDS[3:])


def test_made_position_is_made_of_its_values():
    r = made_position(*FIELDS[:4], FIELDS[5:13], FIELDS[14])
    plain = StoredReading(*FIELDS)
    assert type(r) is StoredReading
    assert r == plain and hash(r) == hash(plain) and repr(r) == repr(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.lat = 4.0  # type: ignore[misc]


@pytest.mark.parametrize("wire, kwargs", [
    ({"q": 3, "ts": 5, "k": "pos", "lat": 1.5, "lon": 2.5, "alt": 3.0, "spd": 4.0,
      "crs": 90.5, "fix": 1, "mode": 3, "sat": 9, "hdop": 0.7, "clk": -12},
     dict(lat=1.5, lon=2.5, alt_m=3.0, speed_kmh=4.0, course_deg=90.5, fix=1, sats=9,
          hdop=0.7)),
    ({"q": 3, "ts": 5, "k": "pos", "lat": 1.5, "lon": 2.5}, dict(lat=1.5, lon=2.5)),
    ({"q": 3, "ts": 5, "k": "can", "bus": "b", "sig": {"A": 1.5}},
     dict(data={"bus": "b", "A": 1.5})),
    ({"q": 3, "ts": 5, "k": "evt", "name": "dtc", "data": {"x": 1}},
     dict(data={"name": "dtc", "x": 1})),
])
def test_from_wire_holds_each_column(wire, kwargs):
    r = StoredReading.from_wire("v", 7, wire, 10)
    assert r == StoredReading("v", 7, 3, 5, wire["k"], received_ms=10, **kwargs)


def test_from_row_reads_the_columns_in_order():
    row = (*FIELDS[:13], json.dumps({"bus": "b"}), 11)
    assert StoredReading.from_row(row) == StoredReading(*FIELDS[:13], {"bus": "b"}, 11)


def _real(v):
    return None if v is None else struct.unpack("f", struct.pack("f", v))[0]


@pytest.mark.parametrize("quantities", [
    (12.5, 50.1, 90.3, 0.9), (None, 50.1, None, None), (None, None, None, None),
    (1e39, 50.1, 3, 0.1), (float("nan"), 1, -0.0, 7),
])
def test_postgres_read_back_rounds_each_real_column_to_float4(quantities):
    alt, speed, course, hdop = quantities
    r = StoredReading("v", 1, 2, 3, "pos", 1.25, 2.5, alt, speed, course, 1, 9, hdop, None, 4)
    back = PostgresAlerts.as_read_back(r)
    expected = dataclasses.replace(r, alt_m=_real(alt), speed_kmh=_real(speed),
                                   course_deg=_real(course), hdop=_real(hdop))
    assert repr(back) == repr(expected)  # repr: NaN is equal to itself here
    assert type(back) is StoredReading


def test_a_signals_json_is_what_the_json_encoder_writes():
    from backend.store.rows import signal_json

    values = [0, -1, 2**63, -(2**80), 0.0, -0.0, 1.5, 1234.5678, 1e300, 5e-324,
              float("nan"), float("inf"), -float("inf"), True, False, None, "rpm", [1, 2.5],
              {"a": 1}, b"\x01"]
    for v in values:
        assert signal_json(v) == json.dumps(v, default=str), v


def test_the_constructor_fallbacks_build_the_same_rows():
    """A build that refuses `__class__` assignment (compiled) takes `_made_by_init` and
    `_made_position_by_init`: the same rows as the plain build's."""
    from backend.store import rows

    assert (rows.made, rows.made_position) in (
        (rows._made_by_class, rows._made_position_by_class),
        (rows._made_by_init, rows._made_position_by_init))
    plain = StoredReading(*FIELDS)
    args = (*FIELDS[:4], FIELDS[5:13], FIELDS[14])
    for make, make_position in {(rows._made_by_init, rows._made_position_by_init),
                                (rows.made, rows.made_position)}:
        r, p = make(*FIELDS), make_position(*args)
        assert type(r) is type(p) is StoredReading
        assert r == p == plain and hash(r) == hash(p) == hash(plain)
