"""Arrivals on the vehicle (agent/stops.py): the fold over the mailbox's routes, its state
carried across restarts (a JSON round trip, and through the journal file's commits), and the
detections as `act` readings."""

from __future__ import annotations

import json
import sqlite3

from agent.journal import Journal
from agent.mailbox import Mailbox
from agent.readings import Action, Position
from agent.stops import (
    ARRIVAL,
    DEPARTURE,
    DEVICE_ID,
    StopWatch,
    VehicleStops,
    detection_key,
    route_zones,
)
from agent.vehicle_db import open_vehicle_db
from geostream.arrivals import distance_m
from geostream.schema import reading_problem

T0 = 1_796_000_000_000
DEPOT = (60.1600, 24.9000)
STOP_A = (60.1700, 24.9400)
ROUTE = {"route_id": "r1", "version": 1, "shift": {"start_ms": T0, "end_ms": T0 + 9 * 3600_000},
         "dwell_s": 5, "stops": [
             {"job_id": "a", "lat": STOP_A[0], "lon": STOP_A[1], "radius_m": 40},
             {"job_id": "fence", "lat": 60.2, "lon": 24.9},  # a geofence: the backend's
         ]}


def drive(n_out=20, n_in=30, n_after=20, step_ms=1000):
    """Fixes: depot → 10 s approaching → parked at A for `n_in` s → away again."""
    out = []
    t = T0
    for i in range(n_out):
        f = i / n_out
        out.append((t, DEPOT[0] + f * (STOP_A[0] - DEPOT[0]) * 0.99,
                    DEPOT[1] + f * (STOP_A[1] - DEPOT[1]) * 0.99))
        t += step_ms
    for i in range(n_in):
        out.append((t, STOP_A[0] + (i % 3 - 1) * 0.00005, STOP_A[1]))  # GNSS wander, 5 m
        t += step_ms
    for i in range(n_after):
        out.append((t, STOP_A[0] + 0.0002 * (i + 5), STOP_A[1]))  # north, 100 m and more
        t += step_ms
    return out


def first_inside(fixes, radius):
    return next(t for t, lat, lon in fixes if distance_m(lat, lon, *STOP_A) <= radius)


def test_route_zones_take_circles_and_bounded_dwell_only():
    zones, dwell, start = route_zones(ROUTE)
    assert [z.stop_id for z in zones] == ["a"] and dwell == 5 and start == T0
    hostile = {"dwell_s": 1e9, "shift": "x", "stops": [
        {"job_id": "n", "lat": float("nan"), "lon": 0, "radius_m": 50},
        {"job_id": "big", "lat": 0, "lon": 0, "radius_m": 1e7},
        {"job_id": "t", "lat": True, "lon": 0, "radius_m": 50}, "junk"]}
    assert route_zones(hostile) == ([], 60.0, 0)


def test_one_arrival_and_one_departure_as_act_readings():
    fixes = drive()
    stops = VehicleStops({"r1": ROUTE})
    found = stops.feed(fixes)
    assert [a.action["kind"] for a in found] == [ARRIVAL, DEPARTURE]
    arrival = found[0]
    assert arrival.ts_ms == arrival.action["at_ms"] == first_inside(fixes, 40)
    assert arrival.action["decided_ms"] == arrival.ts_ms + 5000
    assert arrival.action["key"] == detection_key("r1", "a", "arrival", arrival.ts_ms)
    assert (arrival.action["device_id"], arrival.action["device_seq"]) == (DEVICE_ID, 1)
    assert found[1].action["device_seq"] == 2
    for a in found:  # each passes the gateway's envelope check of an act reading
        assert reading_problem({**a.to_wire(), "q": 1}) is None


def test_a_restart_at_every_fix_gives_the_same_detections():
    """The state after each fix, through JSON (what the journal file keeps), continues as
    the uninterrupted fold does: no detection twice, none lost, same keys and times."""
    fixes = drive()
    whole = [a.action for a in VehicleStops({"r1": ROUTE}).feed(fixes)]
    for cut in range(1, len(fixes)):
        first = VehicleStops({"r1": ROUTE})
        got = first.feed(fixes[:cut])
        saved = json.loads(json.dumps(first.state()))
        got += VehicleStops({"r1": ROUTE}, saved).feed(fixes[cut:])
        assert [a.action for a in got] == whole, cut


def test_positions_before_the_shift_and_going_back_are_skipped():
    fixes = drive()
    early = [(t - 3600_000, lat, lon) for t, lat, lon in fixes]  # the same drive, before
    stops = VehicleStops({"r1": ROUTE})
    assert stops.feed(early) == []
    assert len(stops.feed(fixes)) == 2
    assert stops.feed(fixes[:40]) == []  # a receiver replaying: older than what was folded


def test_a_new_version_continues_and_a_cleared_route_is_forgotten():
    fixes = drive()
    stops = VehicleStops({"r1": ROUTE})
    assert [a.action["kind"] for a in stops.feed(fixes[:45])] == [ARRIVAL]
    v2 = {**ROUTE, "version": 2, "stops": [*ROUTE["stops"], {"job_id": "b", "lat": 61.0,
                                                              "lon": 25.0, "radius_m": 50}]}
    again = VehicleStops({"r1": v2}, stops.state())
    assert [a.action["kind"] for a in again.feed(fixes[45:])] == [DEPARTURE]
    assert VehicleStops({}, again.state()).state() == {"seq": 2, "routes": {}}


def journal_with_route(path, route=ROUTE):
    journal = Journal(str(path), stop_watch=StopWatch())
    vdb = open_vehicle_db(str(path))
    Mailbox(vdb).set_route(route, T0)
    return journal, vdb


def journaled_actions(path) -> list[tuple[int, dict]]:
    import cbor2

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, payload FROM readings WHERE kind='act' ORDER BY seq")
        return [(seq, cbor2.loads(p)["action"]) for seq, p in rows]


def test_the_journal_commits_state_fixes_and_detections_together(tmp_path):
    """Through the journal file: a restart (the journal closed and opened again, as after
    kill -9: every commit is durable) between any two commits gives each detection once,
    right after the fix that decided it."""
    fixes = drive()
    path = tmp_path / "j.sqlite"
    journal, vdb = journal_with_route(path)
    for i in range(0, 40, 7):
        journal.append([Position(*f) for f in fixes[i:i + 7]])
    journal.close()
    journal = Journal(str(path), stop_watch=StopWatch())  # the restart
    for i in range(40, len(fixes), 7):
        journal.append([Position(*f) for f in fixes[i:i + 7]])
    journal.close()
    vdb.close()
    acts = journaled_actions(path)
    assert [a["kind"] for _, a in acts] == [ARRIVAL, DEPARTURE]
    whole = [a.action for a in VehicleStops({"r1": ROUTE}).feed(fixes)]
    assert [a for _, a in acts] == whole
    with sqlite3.connect(path) as db:  # journaled in the commit of the deciding fix
        seq, action = acts[0]
        commit = [ts for (ts,) in db.execute(
            "SELECT ts_ms FROM readings WHERE seq < ? AND seq >= ? - 7", (seq, seq))]
    assert action["decided_ms"] in commit


def test_a_failed_commit_leaves_the_state_as_it_was(tmp_path):
    """A commit that rolls back (disk trouble) saves no state: the fixes, held in memory and
    committed later, are folded then, once."""
    fixes = drive()
    path = tmp_path / "j.sqlite"
    journal, vdb = journal_with_route(path)
    journal.append([Position(*f) for f in fixes[:22]])
    watch = journal.stop_watch
    real_fold = watch.fold
    calls = []

    def failing_fold(db, readings):
        found = real_fold(db, readings)
        calls.append(len(found))
        raise OSError(5, "Input/output error")

    watch.fold = failing_fold
    assert journal.append([Position(*f) for f in fixes[22:50]]) == []  # held in memory
    assert calls == [1], "the arrival was decided in the commit that failed"
    watch.fold = real_fold
    journal._retry_at = 0.0
    journal.append([Position(*f) for f in fixes[50:]])
    journal.close()
    vdb.close()
    assert [a["kind"] for _, a in journaled_actions(path)] == [ARRIVAL, DEPARTURE]


def test_without_routes_nothing_is_written(tmp_path):
    path = tmp_path / "j.sqlite"
    journal = Journal(str(path), stop_watch=StopWatch())
    journal.append([Position(*f) for f in drive()])
    journal.append([Action(T0, {"key": "k" * 8, "device_id": "d" * 8, "device_seq": 1})])
    journal.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM agent_state").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM readings WHERE kind='act'").fetchone() == (1,)
