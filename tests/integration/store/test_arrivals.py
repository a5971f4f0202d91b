"""The embedded store's readings land in arrival order and move into the clustered table
(sql/sqlite/0031): every reader sees them before and after their move, exactly once; a
re-sent reading stays a no-op on either side of its move; a kill -9 between a move's
statements and its COMMIT (or after it) loses, duplicates and misplaces nothing, and the
newest positions and signals of the last commits before it are in their tables after the
restart. Real SQLite, real processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from backend.store import open_store
from backend.store.rows import StoredReading
from backend.store.sqlite.readings import PART, PARTS, part_of

T0 = 1_790_000_000_000
# ids whose last characters span ASCII, digits, one character, non-BMP code points
IDS = ["a", "veh-00001", "veh-00002", "veh-09999", "bus 7", "ü", "Lkw-Ö", "🚚x", "x🚚",
       "z" * 64]


def readings(vehicle: str, seqs, epoch: int = 5) -> list[StoredReading]:
    out = []
    for q in seqs:
        t = T0 + q * 1000
        if q % 3 == 0:
            out.append(StoredReading(vehicle, epoch, q, t, "can", data={
                "bus": "can0", "rpm": q * 10, "temp": q + 0.1}, received_ms=t))
        else:
            out.append(StoredReading(vehicle, epoch, q, t, "pos", lat=50 + q / 1000, lon=10.0,
                                     speed_kmh=float(q), course_deg=90.0, fix=1, sats=8,
                                     hdop=0.9, received_ms=t))
    return out


def opened(path):
    """A store on `path` whose moves run only when a test calls them."""
    store = open_store(f"sqlite://{path}")
    store._move_due = float("inf")
    return store


def _counts(path) -> tuple[int, int, int, int]:
    """(view rows, distinct keys in the view, clustered rows, arrival rows)."""
    with sqlite3.connect(path) as db:
        return (db.execute("SELECT count(*) FROM vehicle_telemetry").fetchone()[0],
                db.execute("SELECT count(*) FROM (SELECT DISTINCT vehicle_id, epoch, seq "
                           "FROM vehicle_telemetry)").fetchone()[0],
                db.execute("SELECT count(*) FROM telemetry_by_vehicle").fetchone()[0],
                db.execute("SELECT count(*) FROM telemetry_arrivals").fetchone()[0])


async def _answers(store, vehicles) -> tuple:
    return tuple([
        *[await store.route(v, T0, T0 + 100_000) for v in vehicles],
        *[await store.signal_series(v, "rpm", T0, T0 + 100_000, 100) for v in vehicles],
        *[await store.readings_fingerprint(v, T0, T0 + 100_000) for v in vehicles],
        await store.last_positions(), await store.last_fixes(), await store.last_signals(),
        await store.count_readings()])


async def test_the_view_and_the_writer_place_a_vehicle_in_the_same_part(tmp_path):
    """The part is one SQL expression written twice (the view, the writer's insert): were
    they to differ, the view would hide that vehicle's readings until their move."""
    store = opened(tmp_path / "fleet.db")
    await store.open()
    try:
        await store.write([r for v in IDS for r in readings(v, range(1, 4))], [])
        with sqlite3.connect(tmp_path / "fleet.db") as db:
            view = db.execute("SELECT sql FROM sqlite_master WHERE name='vehicle_telemetry'"
                              ).fetchone()[0]
            parts = {v: db.execute(f"SELECT {PART.format(v='?1')}", (v,)).fetchone()[0]
                     for v in IDS}
        assert " ".join(PART.format(v="vehicle_id").split()) in " ".join(view.split())
        assert len(set(parts.values())) > 5  # they spread over the parts
        assert parts == {v: part_of(v) for v in IDS}  # the pending rows' moves
        assert _counts(tmp_path / "fleet.db") == (30, 30, 0, 30)  # all still arriving
        for v in IDS:
            assert await store.count_readings(v) == 3, v
            assert len(await store.route(v, T0, T0 + 10_000)) == 2, v
    finally:
        await store.close()


async def test_readers_see_each_reading_once_before_and_after_its_move(tmp_path):
    path = tmp_path / "fleet.db"
    store = opened(path)
    await store.open()
    try:
        first = [r for v in IDS[:4] for r in readings(v, range(1, 21))]
        await store.write(first, [])
        arriving = await _answers(store, IDS[:4])
        await store._run(store._move, None)
        assert _counts(path) == (80, 80, 80, 0)
        assert await _answers(store, IDS[:4]) == arriving
        # re-sent after their move (and some new): hidden by the view, dropped by the move
        await store.write([r for v in IDS[:4] for r in readings(v, range(15, 26))], [])
        assert _counts(path) == (100, 100, 80, 44)
        await store.write([r for v in IDS[:4] for r in readings(v, range(20, 26))], [])
        assert _counts(path)[:2] == (100, 100)
        both = await _answers(store, IDS[:4])
        for part in range(PARTS):
            await store._run(store._move, part)
        assert _counts(path) == (100, 100, 100, 0)
        assert await _answers(store, IDS[:4]) == both
        assert [p["seq"] for p in await store.route("a", T0, T0 + 100_000)] == [
            q for q in range(1, 26) if q % 3]
        # a backfill of older readings does not move the last position back
        await store.write(readings("a", [-1]), [])
        [last] = [p for p in await store.last_positions() if p["vehicle_id"] == "a"]
        assert last["seq"] == 25
    finally:
        await store.close()


async def test_the_newest_position_and_signals_reach_their_tables(tmp_path):
    """Pending in memory between moves; every question of them, every move and a close write
    them; a plain connection then sees what the store answers."""
    path = tmp_path / "fleet.db"
    store = opened(path)
    await store.open()
    try:
        await store.write(readings("a", range(1, 7)) + readings("b", range(1, 4)), [])
        await store.write(readings("a", [8, 9]), [])
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM last_position").fetchone()[0] == 0
        positions = await store.last_positions()
        assert [(p["vehicle_id"], p["seq"]) for p in positions] == [("a", 8), ("b", 2)]
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT vehicle_id, seq FROM last_position ORDER BY 1").fetchall(
                ) == [("a", 8), ("b", 2)]
        assert (await store.last_signals())["a"]["rpm"] == {"value": 90, "time_ms": T0 + 9000}
        assert (await store.last_fixes())["a"] == {"fix": 1, "sats": 8, "hdop": 0.9}
        await store.write(readings("b", [4, 5]), [])
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT seq FROM last_position WHERE vehicle_id='b'").fetchone() == (5,)


# The child: acks (prints) each committed batch, then dies by SIGKILL at `where`.
CHILD = textwrap.dedent("""
    import asyncio, os, signal, sys
    sys.path.insert(0, {root!r})
    from backend.store import open_store
    from backend.store.sqlite import readings as R
    from backend.store.sqlite.db import transaction
    from tests.integration.store.test_arrivals import IDS, readings

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def move_then_die(store, where):
        db = store._db
        if where == "before_commit":  # the move's statements done, its COMMIT not
            db.execute("BEGIN IMMEDIATE")
            store._pending_last.write(db)
            db.execute(R._MOVE.format(where="true"))
            db.execute(R._MOVED.format(where="true"))
            die()
        store._move(None)
        die()

    async def main(path, where):
        store = open_store("sqlite://" + path)
        store._move_due = float("inf")  # moves only here
        await store.open()
        for k in range(4):
            seqs = range(1 + 10 * k, 11 + 10 * k)
            await store.write([r for v in IDS[:5] for r in readings(v, seqs)], [])
            print("acked", k, flush=True)
            if k == 1:  # one part moved along the way: the first vehicle's
                await store._run(store._move, R.part_of(IDS[0]))
        if where == "after_write":
            die()
        await store._run(move_then_die, store, where)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


async def _killed_run(tmp_path: Path, where: str) -> Path:
    path = tmp_path / f"{where}.db"
    root = str(Path(__file__).resolve().parents[3])
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=root), str(path), where],
                         capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert out.stdout.split("\n")[:4] == [f"acked {k}" for k in range(4)]
    return path


async def test_a_kill_minus_9_around_a_move_loses_and_duplicates_nothing(tmp_path):
    reference = open_store(f"sqlite://{tmp_path / 'reference.db'}")  # the same batches, alive
    await reference.open()
    for k in range(4):
        await reference.write([r for v in IDS[:5] for r in readings(v, range(1 + 10 * k,
                                                                             11 + 10 * k))], [])
    expected = await _answers(reference, IDS[:5])
    await reference.close()
    assert expected[-1] == 200
    moved = [v for v in IDS[:5] if part_of(v) == part_of(IDS[0])]  # along the way
    for where in ("after_write", "before_commit", "after_commit"):
        path = await _killed_run(tmp_path, where)
        with sqlite3.connect(path) as db:  # before the restart: as the kill left it
            arriving = db.execute("SELECT count(*) FROM telemetry_arrivals").fetchone()[0]
            newest = db.execute("SELECT max(seq) FROM last_position").fetchone()[0]
            seen = [v for v in IDS[:5] if db.execute(
                "SELECT 1 FROM last_position WHERE vehicle_id=?", (v,)).fetchone()]
        assert arriving == (0 if where == "after_commit" else 200 - 20 * len(moved)), where
        # the positions of the commits after the move along the way were pending
        assert newest == (40 if where == "after_commit" else 20), where
        assert seen == (IDS[:5] if where == "after_commit" else moved), where
        store = opened(path)
        await store.open()
        try:
            assert _counts(path) == (200, 200, 200, 0), where
            assert await _answers(store, IDS[:5]) == expected, where
            # every batch re-sent after the restart (its acks lost with the process): no-ops
            for k in range(4):
                await store.write([r for v in IDS[:5] for r in readings(
                    v, range(1 + 10 * k, 11 + 10 * k))], [])
            assert await _answers(store, IDS[:5]) == expected, where
        finally:
            await store.close()
        assert _counts(path) == (200, 200, 200, 200), where  # the re-sent: hidden, not moved
        os.unlink(path)
