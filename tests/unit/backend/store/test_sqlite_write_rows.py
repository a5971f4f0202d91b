"""The SQLite store's one-pass parameters (`write_rows`) are, value for value, what the
batch's readings give through `json.dumps`, `newest_positions` and `newest_signals`: the
stored rows stay byte-identical to the straightforward derivation."""

import json
import random

from backend.store.rows import StoredReading, newest_positions, newest_signals
from backend.store.sqlite.readings import write_rows

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
    signals = [(v, name, json.dumps(value, default=str), t)
               for (v, name), (value, t) in newest_signals(readings).items()]
    return rows, last, signals


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


def _same(a, b):
    # repr: NaN (a float column) is not equal to itself
    assert repr(a[0]) == repr(b[0])
    assert repr(a[1]) == repr(b[1])
    assert sorted(map(repr, a[2])) == sorted(map(repr, b[2]))


def test_the_parameters_are_the_straightforward_ones():
    rnd = random.Random(29)
    for n in (0, 1, 2, 5, 40, 200):
        for _ in range(60):
            batch = _batch(rnd, n)
            _same(write_rows(batch), _expected(batch))


def test_a_vehicles_signals_come_from_its_newest_snapshot_per_signal():
    a = StoredReading("v", 1, 1, 20, "can", data={"bus": "b", "A": 1.5, "B": 2})
    b = StoredReading("v", 1, 2, 10, "can", data={"bus": "b", "A": 9.5, "C": "x"})
    c = StoredReading("v", 1, 3, 20, "can", data={"A": 7.0})  # equal time: the first stays
    _, _, signals = write_rows([a, b, c])
    assert sorted(signals) == [("v", "A", "1.5", 20), ("v", "B", "2", 20),
                               ("v", "C", '"x"', 10)]
