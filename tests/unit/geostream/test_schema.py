"""The one reading schema: wire keys as docs/protocol.md §4 spells them, rows as stored."""

from agent.readings import Position, Signals
from backend.store.base import StoredReading
from geostream.schema import POSITION_QUANTITIES, reading_problem


def test_wire_keys_are_the_protocols():
    # docs/protocol.md §4, written out by hand
    assert [q.wire for q in POSITION_QUANTITIES] == [
        "alt", "spd", "crs", "fix", "mode", "sat", "hdop", "clk"]
    p = Position(ts_ms=5, lat=1.5, lon=2.5, alt_m=3.0, speed_kmh=4.0, course_deg=90.5, fix=1,
                 mode=3, sats=9, hdop=0.7, clock_offset_ms=-12)
    assert p.to_wire() == {"ts": 5, "k": "pos", "lat": 1.5, "lon": 2.5, "alt": 3.0,
                           "spd": 4.0, "crs": 90.5, "fix": 1, "mode": 3, "sat": 9,
                           "hdop": 0.7, "clk": -12}


def test_a_position_flattens_into_its_columns():
    wire = {**Position(ts_ms=5, lat=1.5, lon=2.5, speed_kmh=4.0, course_deg=90.5,
                       sats=9).to_wire(), "q": 3}
    row = StoredReading.from_wire("v", 7, wire, received_ms=10)
    assert (row.seq, row.time_ms, row.kind, row.lat, row.lon) == (3, 5, "pos", 1.5, 2.5)
    assert (row.speed_kmh, row.course_deg, row.sats, row.alt_m, row.hdop) == (
        4.0, 90.5, 9, None, None)
    assert row.data is None and row.received_ms == 10


def test_signals_keep_their_bus_in_the_data():
    wire = {**Signals(ts_ms=5, bus="j1939", values={"EngineSpeed": 812.5}).to_wire(), "q": 1}
    row = StoredReading.from_wire("v", 7, wire, received_ms=0)
    assert row.data == {"bus": "j1939", "EngineSpeed": 812.5} and row.lat is None


def test_every_float_quantity_is_checked_for_finiteness():
    base = {"q": 1, "ts": 1, "k": "pos", "lat": 1.0, "lon": 1.0}
    for key in ("alt", "spd", "crs", "hdop"):
        assert reading_problem({**base, key: float("nan")}) == f"{key!r} is not a finite number"
    assert reading_problem(base) is None
