"""The SQLite store's one-pass parameters (`write_rows`) are, value for value, what the
batch's readings give through `json.dumps` and `newest_positions`, and its CAN readings with
map data: the stored rows stay byte-identical to the straightforward derivation (the data by
the C encoder made once, `readings.data_json`)."""

import json
import random

import pytest

from backend.store.rows import StoredReading, newest_positions
from backend.store.sqlite.readings import data_json, write_rows

# values a CAN snapshot may hold after strict CBOR (and a few it should not: the store must
# still write them as the encoders do)
VALUES = [0, -1, 2**63, 1.5, -0.0, 1234.5678, 1e300, 5e-324, float("nan"), float("inf"),
          -float("inf"), True, False, None, "rpm", "a,b\"ü", [1, 2.5], {"a": [1, {"b": 2}]},
          b"\x01"]
NAMES = ["EngineSpeed", "Fuel", "ü-name", 'q"uote', "bus"]


def _expected(readings):
    """The parameters as `SqliteReadings._write` derived them before the one pass."""
    def text(v):
        return json.dumps(v, separators=(",", ":"), default=str)
    rows = [(r.vehicle_id, r.epoch, r.seq, r.time_ms, r.kind, r.lat, r.lon, r.alt_m,
             r.speed_kmh, r.course_deg, r.fix, r.sats, r.hdop,
             None if r.data is None else text(r.data), r.received_ms) for r in readings]
    last = [(r.vehicle_id, r.time_ms, r.lat, r.lon, r.speed_kmh, r.course_deg, r.epoch, r.seq)
            for r in newest_positions(readings).values()]
    cans = [(row, r.data) for row, r in zip(rows, readings, strict=True)
            if r.kind == "can" and isinstance(r.data, dict)]
    return rows, last, cans


def _batch(rnd: random.Random, n: int) -> list[StoredReading]:
    out = []
    for q in range(n):
        v, t = f"v{rnd.randrange(4)}", 1_000 + rnd.randrange(6)  # repeats, equal times
        kind = rnd.choice(["pos", "pos", "can", "can", "evt"])
        if kind == "pos":
            out.append(StoredReading(v, 7, q, t, "pos", rnd.random(), rnd.random(),
                                     data=rnd.choice([None, None, {"x": 1}]), received_ms=9))
            continue
        if rnd.random() < 0.8:  # numbers and text: the encoded-once way
            data = {"bus": "can0", **{name: rnd.choice([rnd.random() * 1e3, rnd.randrange(99),
                                                        "on", float("nan")])
                                      for name in rnd.sample(NAMES[:4], rnd.randrange(5))}}
        else:
            data = {rnd.choice(NAMES + [1, None]): rnd.choice(VALUES) for _ in range(3)}
        if rnd.random() < 0.05:
            data = rnd.choice([[1, 2], "text", None])  # not a map: no signals
        out.append(StoredReading(v, 7, q, t, kind, data=data, received_ms=9))
    return out


def test_the_parameters_are_the_straightforward_ones():
    rnd = random.Random(29)
    for n in (0, 1, 2, 5, 40, 200):
        for _ in range(60):
            batch = _batch(rnd, n)
            # repr: NaN (a float column) is not equal to itself
            rows, last, cans = write_rows(batch)
            expected = _expected(batch)
            assert repr(rows) == repr(expected[0]) and repr(last) == repr(expected[1])
            assert [(repr(row), id(data)) for row, data in cans] == [
                (repr(row), id(data)) for row, data in expected[2]]


def test_data_json_is_the_encoders_text_and_refuses_what_it_refuses():
    for value in VALUES + [{"k": VALUES}, {1: 2, None: 3, 2.5: 4, False: 5}, "text", 7]:
        assert data_json(value) == json.dumps(value, separators=(",", ":"), default=str)
    with pytest.raises(TypeError):
        data_json({(1, 2): 3})  # a key JSON has no text for, as json.dumps
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RecursionError):
        data_json(deep)
