"""The SQLite store's pending newest positions and signals (`db.PendingLast`), written at each
move and before each question of them (the signals of the CAN readings kept, read by SQLite
from the arrivals), are what upserting every committed reading's position and signals row by
row gives: the same rows, each signal's value the same JSON text (a number's text as the
reading's data holds it); readings whose data SQLite's JSON path cannot read (a name holding a
quote, NaN) are kept as rows in Python and stop no move."""

import json
import random
import sqlite3

from backend.store.rows import StoredReading, json_text, signal_json
from backend.store.sqlite.db import LAST_POSITION_UPSERT, LAST_SIGNAL_UPSERT, plain_can
from backend.store.sqlite.readings import PARTS, part_of
from backend.store.sqlite.store import SqliteStore

NAMES = ["EngineSpeed", "Fuel", "ü-name", 'q"uote', "back\\slash", "dot.name", "$", "[0]",
         "", "bus"]
VALUES = [0, -1, 2**63 - 1, 1.5, -0.0, 0.30000000000000004, 1e300, 5e-324, 1e16, 12.0,
          "on", 'say "hi"', "tab\t", True, None, [1, 2.5], {"a": [1, {"b": 2}]}]


def _store() -> SqliteStore:
    store = SqliteStore(":memory:")
    store._open(True)  # on this thread: the test calls the thread's functions itself
    return store


def _reading(rnd: random.Random, v: str, q: int) -> StoredReading:
    t = 1_000 + rnd.randrange(8)  # out of order, equal times
    kind = rnd.choice(["pos", "pos", "can", "can", "evt"])
    if kind == "pos":
        return StoredReading(v, 7, q, t, "pos", rnd.random(), rnd.random(),
                             speed_kmh=rnd.choice([None, 3.5]), received_ms=9)
    if rnd.random() < 0.7:  # what a validated CAN reading holds
        data: object = {"bus": "can0", **{name: rnd.choice([rnd.random() * 1e3, rnd.randrange(99),
                                                             "on"])
                                          for name in rnd.sample(NAMES[:3], rnd.randrange(4))}}
    else:  # and what only another writer could store
        data = {rnd.choice(NAMES): rnd.choice(VALUES + [float("nan"), float("inf")])
                for _ in range(3)}
    if rnd.random() < 0.05:
        data = rnd.choice([[1, 2], "text", None])  # not a map: no signals
    return StoredReading(v, 7, q, t, kind, data=data, received_ms=9)  # type: ignore[arg-type]


def _reference() -> sqlite3.Connection:
    """The two tables, upserted row by row per committed reading (the tables' own rule)."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE last_position (vehicle_id TEXT PRIMARY KEY, time_ms, lat, lon, "
               "speed_kmh, course_deg, epoch, seq)")
    db.execute("CREATE TABLE last_signal (vehicle_id TEXT, signal TEXT, value TEXT, time_ms, "
               "PRIMARY KEY (vehicle_id, signal))")
    return db


def _upsert(db: sqlite3.Connection, r: StoredReading) -> None:
    if r.kind == "pos":
        db.execute(LAST_POSITION_UPSERT, (r.vehicle_id, r.time_ms, r.lat, r.lon, r.speed_kmh,
                                          r.course_deg, r.epoch, r.seq))
    elif r.kind == "can" and isinstance(r.data, dict):
        data = json.loads(json_text(r.data))  # names as the stored JSON holds them
        db.executemany(LAST_SIGNAL_UPSERT, [(r.vehicle_id, name, signal_json(value), r.time_ms)
                                            for name, value in data.items() if name != "bus"])


def _signals(db: sqlite3.Connection) -> list[tuple]:
    """last_signal's rows; a map or list value (the encoders space them differently) parsed,
    every other value its exact text."""
    out = []
    for v, name, value, t in db.execute("SELECT * FROM last_signal ORDER BY 1, 2"):
        parsed = json.loads(value)
        out.append((v, name, repr(parsed) if isinstance(parsed, (dict, list)) else value, t))
    return out


def _same(store: SqliteStore, reference: sqlite3.Connection, vehicles=None) -> None:
    db = store._db
    where = "" if vehicles is None else f" WHERE vehicle_id IN ({','.join('?' * len(vehicles))})"
    args = () if vehicles is None else tuple(vehicles)
    for table in ("last_position",):
        assert (db.execute(f"SELECT * FROM {table}{where} ORDER BY 1", args).fetchall()
                == reference.execute(f"SELECT * FROM {table}{where} ORDER BY 1", args
                                     ).fetchall())
    mine = [r for r in _signals(db) if vehicles is None or r[0] in vehicles]
    theirs = [r for r in _signals(reference) if vehicles is None or r[0] in vehicles]
    assert mine == theirs


def test_the_derived_rows_are_the_row_by_row_upserts():
    rnd = random.Random(14)
    vehicles = [f"v{k}" for k in range(24)]
    assert len({part_of(v) for v in vehicles}) > 4
    for _ in range(12):
        store, reference, q = _store(), _reference(), 0
        for _ in range(8):  # commits, each followed by a move, a question, or nothing
            batch = []
            for _ in range(rnd.randrange(1, 60)):
                q += 1  # later readings have higher seqs: the first of equal times, the lower
                batch.append(_reading(rnd, rnd.choice(vehicles), q))
            store._write(batch, [])
            for r in batch:
                _upsert(reference, r)
            step = rnd.random()
            if step < 0.4:
                part = rnd.randrange(PARTS)
                store._move(part)
                _same(store, reference, [v for v in vehicles if part_of(v) == part])
            elif step < 0.6:
                store._last_written()
                _same(store, reference)
        store._move(None)
        _same(store, reference)
        store._db.close()


def test_a_reading_sqlite_cannot_read_moves_and_keeps_its_signals():
    store = _store()
    odd = StoredReading("a", 1, 1, 50, "can", data={'q"uote': 1.5, "nan": float("nan"),
                                                    "bus": "can0"})
    plain = StoredReading("a", 1, 2, 40, "can", data={'q"uote': 9.5, "rpm": 800, "nan": 2.0})
    other = StoredReading("b", 1, 1, 40, "can", data={"rpm": 700})
    store._write([odd, plain, other], [])
    store._move(None)
    assert store._db.execute("SELECT * FROM last_signal ORDER BY 1, 2").fetchall() == [
        ("a", "nan", "NaN", 50), ("a", 'q"uote', "1.5", 50), ("a", "rpm", "800", 40),
        ("b", "rpm", "700", 40)]
    assert store._db.execute("SELECT count(*) FROM telemetry_arrivals").fetchone() == (0,)
    store._db.close()


def test_a_number_keeps_the_text_the_reading_was_stored_with():
    store = _store()
    values = {f"s{k}": v for k, v in enumerate(
        [0.30000000000000004, 12.0, 1e16, 5e-324, -0.0, 2**63 - 1, 1.5e-07, "t\u00e9"])}
    store._write([StoredReading("a", 1, 1, 50, "can", data=values)], [])
    store._last_written()
    assert dict(store._db.execute("SELECT signal, value FROM last_signal")) == {
        name: signal_json(value) for name, value in values.items()}
    store._db.close()


def test_a_vehicle_keeps_one_can_reading_per_set_of_signals():
    """What the move reads: the newest reading of the same signals, one per different set."""
    store = _store()
    same = [StoredReading("a", 1, q, 100 + q, "can", data={"bus": "c", "rpm": q, "t": 1.5})
            for q in (1, 3, 2)]
    other = StoredReading("a", 1, 4, 50, "can", data={"bus": "c", "door": "open"})
    store._write(same, [])
    store._write([other], [])
    kept = store._pending_last.snapshots[part_of("a")]["a"]
    assert [(t, seq) for t, _, seq, _ in kept] == [(103, 3), (50, 4)]
    store._last_written()
    assert store._db.execute("SELECT signal, value, time_ms FROM last_signal ORDER BY 1"
                             ).fetchall() == [("door", '"open"', 50), ("rpm", "3", 103),
                                              ("t", "1.5", 103)]
    store._db.close()


def test_only_data_sqlite_reads_whole_is_left_to_it():
    assert plain_can('{"bus":"c","rpm":1.5,"x":"\\u00e9"}')
    for text in ('{"q\\"uote":1}', '{"a":"say \\"hi\\""}', '{"a":NaN}', '{"a":-Infinity}',
                 '[1,2]', '"text"'):
        assert not plain_can(text), text
