"""The SQLite store's write path per reading, sans IO: today's path against the one before.

    .venv/bin/python bench/bench_store_write.py [--vehicles 10000] [--history-s 200]
        [--seconds 6] [--batch-ms 20] [--gil]

No gateway, no event loop: `SqliteReadings._write` (what the store thread runs per commit)
called directly on two store files side by side, each durable (WAL, synchronous=FULL, on
the disk the temporary directory is on):
- "before": the migrations but sql/sqlite/0031, each commit inserting straight into the
  table clustered by (vehicle, time, epoch, seq) (the write path of session 11);
- "now": every migration: each commit appends to `telemetry_arrivals`, and one of its parts
  moves into the clustered table every `MOVE_EVERY_S / PARTS` seconds of the fleet's time
  (on this thread, counted with the commits: the store thread does both).
Both first get half to all of `--history-s` seconds of every vehicle's readings (vehicle
after vehicle, so each vehicle's rows fill pages of their own as a long-running fleet's do,
and fill them up at different seconds), then the measured seconds: every vehicle's next
reading, its device time the fleet's second (as live readings arrive)
(3 positions to 1 CAN snapshot of 8 signals, as the load tester's fleet), the
vehicles in a fixed random phase order, cut into the commits the writer makes at 1 Hz
(`--batch-ms` of readings each; 20 ms is the writer's pacing). The two files take turns
second by second, so a busy machine slows both alike; the first `MOVE_EVERY_S` seconds are
not measured (until each part holds its full turn of readings). Per reading: the store thread's CPU
(user + system: binding, B-tree work, WAL writes, fsync, checkpoints) and the bytes it wrote
(WAL frames and checkpoints); then `WAL_SECONDS` more seconds without checkpoints, for the
WAL pages (4 KB each) a reading adds. With `--gil`, also the time each side held the GIL
per reading (`GilSamples`): what the store thread takes from the gateway's event loop.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import gc_policy  # noqa: E402
from backend.store.base import sql_dir  # noqa: E402
from backend.store.rows import StoredReading  # noqa: E402
from backend.store.sqlite import readings as sqlite_readings  # noqa: E402
from backend.store.sqlite.db import (  # noqa: E402
    LAST_POSITION_UPSERT,
    LAST_SIGNAL_UPSERT,
    transaction,  # noqa: E402
)
from backend.store.sqlite.store import SqliteStore  # noqa: E402
from bench.store_before import session13_rows  # noqa: E402
from loadtest.fleet import CAN_EVERY, CAN_SIGNALS  # noqa: E402

T0 = 1_790_000_000_000
EPOCH = 4_611_686_018_427_387_000  # a journal's 62-bit epoch
# the migrations of today's layout: "before" stops short of them
LAYOUT_MIGRATIONS = ("0031_telemetry_arrivals",)
# the insert of session 11's write path (before 0031): straight into the clustered table
BEFORE_INSERT = f"""INSERT INTO vehicle_telemetry ({sqlite_readings._COLUMN_LIST})
    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"""
# seconds written without checkpoints after the measured ones, for the WAL pages per reading
WAL_SECONDS = 8
# readings per prefill transaction
PREFILL_ROWS = 100_000


def reading(v: int, q: int, rnd, t: int | None = None) -> StoredReading:
    """Vehicle `v`'s reading number `q` (a second apart, or at device time `t`), as the load
    tester's fleet sends."""
    vid, t = f"veh-{v:05d}", T0 + q * 1000 if t is None else t
    if q % CAN_EVERY == 0:
        return StoredReading(vid, EPOCH, q, t, "can", data={
            "bus": "can0", **{s: round(rnd() * 1000, 1) for s in CAN_SIGNALS}},
            received_ms=t + 30)
    return StoredReading(vid, EPOCH, q, t, "pos", 52 + rnd(), 13 + rnd(), 12.5, rnd() * 90,
                         rnd() * 360, 1, 9, 0.9, None, t + 30)


class Side:
    """One store file and what its measured seconds cost."""

    def __init__(self, name: str, tmp: Path, before: bool):
        self.name = name
        self.path = tmp / f"{name}.db"
        sql = tmp / f"sql-{name}"
        shutil.copytree(sql_dir(), sql)
        if before:
            for name in LAYOUT_MIGRATIONS:
                for f in sql.glob(f"*/{name}.sql"):
                    f.unlink()
        os.environ["FLEET_SQL_DIR"] = str(sql)
        try:
            self.store = SqliteStore(str(self.path))
            self.store._open(True)  # on this thread: the bench calls `_write` itself
        finally:
            del os.environ["FLEET_SQL_DIR"]
        self.before = before
        self.cpu_s = 0.0
        self.written = 0
        self.readings = 0

    def commit(self, batch: list[StoredReading]) -> None:
        """One commit of the side's write path."""
        if not self.before:
            self.store._write(batch, [])
            return
        db = self.store._db
        rows, last, signals = session13_rows(batch)
        with transaction(db):
            db.executemany(BEFORE_INSERT, rows)
            db.executemany(LAST_POSITION_UPSERT, last)
            db.executemany(LAST_SIGNAL_UPSERT, signals)

    def write(self, batches: list[list[StoredReading]], moves: list[list[int]]) -> None:
        """The commits of one second, each followed by the parts due to move after it."""
        w0, c0 = _written(), time.thread_time()
        (_before_second if self.before else _now_second)(self, batches, moves)
        self.cpu_s += time.thread_time() - c0
        self.written += _written() - w0

    def wal_frames(self, seconds: list[list[list[StoredReading]]]) -> float:
        """WAL frames (pages) per reading of more seconds, with no checkpoint meanwhile."""
        db = self.store._db
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        auto = db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        db.execute("PRAGMA wal_autocheckpoint=0")
        n = 0
        for batches, moves in seconds:
            for batch, parts in zip(batches, moves, strict=True):
                self.commit(batch)
                n += len(batch)
                if not self.before:
                    for part in parts:
                        self.store._move(part)
        db.execute(f"PRAGMA wal_autocheckpoint={auto}")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        size = Path(f"{self.path}-wal").stat().st_size - 32  # the WAL header
        return size / (page + 24) / n  # a frame: its header + the page

    def close(self) -> None:
        self.store._db.close()


def _before_second(side: Side, batches: list[list[StoredReading]],
                   moves: list[list[int]]) -> None:
    """`Side.write` of "before" (its own name, for the GIL samples: `GilSamples`)."""
    for batch in batches:
        side.commit(batch)
        side.readings += len(batch)


def _now_second(side: Side, batches: list[list[StoredReading]], moves: list[list[int]]) -> None:
    """`Side.write` of "now", each commit followed by the parts due to move after it."""
    for batch, parts in zip(batches, moves, strict=True):
        side.commit(batch)
        side.readings += len(batch)
        for part in parts:
            side.store._move(part)


class GilSamples:
    """The GIL-held time of each side's measured seconds, by sampling (`--gil`): py-spy
    attached to this process (`--gil`: only a thread holding the GIL is sampled;
    `--nonblocking`: the process is not paused) from the end of the warm-up to the end of the
    measured seconds; a sample whose stack holds `_before_second` or `_now_second` counts for
    that side, at 1/rate s each.

    Why sampling: the store thread lets go of the GIL inside each sqlite3 step (SQLite's own
    work, its writes and fsyncs), so its CPU is not what it takes from the event loop; the
    thread's own state is not visible from Python (a sampler thread of ours would run only
    when the GIL is free). A sampler that falls behind on a busy machine loses samples of both
    sides alike (they take turns second by second): the ratio holds, the µs are a floor.
    `GIL_STACKS=FILE` in the environment keeps the samples (py-spy's raw stacks) there."""

    RATE = 1000

    def __init__(self, py_spy: str, out: Path):
        self.out, self.log = out, out.with_suffix(".log")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [py_spy, "record", "--pid", str(os.getpid()), "--gil", "--nonblocking",
                 "--rate", str(self.RATE), "--format", "raw", "--output", str(out)],
                stdout=log, stderr=subprocess.STDOUT)
        for _ in range(300):  # until it samples (its first line), at most ~30 s
            if self.log.read_bytes() or self.proc.poll() is not None:
                break
            time.sleep(0.1)

    def stop(self) -> dict[str, float]:
        """Seconds of GIL-held samples per side."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {self.log.read_text()[-500:]}")
        held = {"before": 0, "now": 0}
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            for name, fn in (("before", "_before_second"), ("now", "_now_second")):
                if fn + " (" in stack:
                    held[name] += int(count)
        if os.environ.get("GIL_STACKS"):
            shutil.copy(self.out, os.environ["GIL_STACKS"])
        return {name: n / self.RATE for name, n in held.items()}


def _written() -> int:
    """Bytes this process passed to write(2) and friends so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--history-s", type=int, default=200,
                    help="seconds of every vehicle's readings stored before measuring")
    ap.add_argument("--seconds", type=int, default=6, help="measured seconds (each side)")
    ap.add_argument("--batch-ms", type=int, default=20,
                    help="readings per commit: this many ms of the fleet's 1 Hz readings")
    ap.add_argument("--gil", action="store_true",
                    help="also the GIL-held time per reading, sampled by py-spy (GilSamples)")
    a = ap.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    rnd = random.Random(1).random
    order = list(range(a.vehicles))
    random.Random(2).shuffle(order)
    per_commit = max(1, a.vehicles * a.batch_ms // 1000)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sides = [Side("before", tmp, True), Side("now", tmp, False)]
        # each vehicle's own number of readings so far (half to all of --history-s), so their
        # newest leaf pages fill, and split, at different seconds as a real fleet's do
        pick = random.Random(3).randint
        stored = [pick(a.history_s // 2, a.history_s) for _ in range(a.vehicles)]
        for side in sides:
            rows: list[StoredReading] = []
            for v in range(a.vehicles):
                rows += [reading(v, q, rnd, T0 + (q - stored[v]) * 1000)
                         for q in range(1, stored[v] + 1)]
                if len(rows) >= PREFILL_ROWS or v == a.vehicles - 1:
                    side.commit(rows)
                    rows = []
            if not side.before:
                side.store._move(None)
            side.store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        gc_policy.after_start()  # the gateway's collector settings from here on
        move_s = sqlite_readings.MOVE_EVERY_S / sqlite_readings.PARTS
        moved = [0]  # parts moved so far

        def commits(k: int) -> tuple[list[list[StoredReading]], list[list[int]]]:
            """The commits of measured second `k` (1, 2, …) and the parts that move after
            each (by the fleet's time: one every MOVE_EVERY_S / PARTS seconds)."""
            second = [reading(v, stored[v] + k, rnd, T0 + k * 1000 + int(i * 1000 / a.vehicles))
                      for i, v in enumerate(order)]
            batches = [second[i:i + per_commit] for i in range(0, len(second), per_commit)]
            moves: list[list[int]] = []
            for b in range(len(batches)):
                end_s = k - 1 + (b + 1) / len(batches)
                parts = []
                while (moved[0] + 1) * move_s <= end_s:
                    parts.append(moved[0] % sqlite_readings.PARTS)
                    moved[0] += 1
                moves.append(parts)
            return batches, moves

        warm = int(sqlite_readings.MOVE_EVERY_S)  # until every part has had a full turn
        gil: GilSamples | None = None
        for k in range(1, warm + a.seconds + 1):
            batches = commits(k)
            for side in (sides if k % 2 else sides[::-1]):
                side.write(*batches)
            if k == warm:
                for side in sides:
                    side.cpu_s, side.written, side.readings = 0.0, 0, 0
                gil = GilSamples(py_spy, tmp / "gil.txt") if a.gil else None
        held = gil.stop() if gil is not None else None
        last = warm + a.seconds + 1
        more = [commits(k) for k in range(last, last + WAL_SECONDS)]
        frames = {side.name: side.wal_frames(more) for side in sides}
        for side in sides:
            side.close()
        print(f"{a.vehicles} vehicles × 1 Hz, {a.history_s // 2}–{a.history_s} s stored "
              f"before, {a.seconds} s measured, {per_commit} readings per commit, SQLite "
              f"{sqlite3.sqlite_version}; per reading:")
        base = sides[0]
        for side in sides:
            n = max(1, side.readings)
            print(f"  {side.name:<7} store thread CPU {side.cpu_s / n * 1e6:5.1f} µs "
                  f"({side.cpu_s / base.cpu_s:.2f}×), written {side.written / n / 1024:4.1f} KiB "
                  f"(WAL and checkpoints); WAL pages {frames[side.name]:.2f}")
        if held is not None:
            print("  GIL held (py-spy samples): " + ", ".join(
                f"{side.name} {held[side.name] / max(1, side.readings) * 1e6:.2f} µs "
                f"({held[side.name] / max(held['before'], 1e-9):.2f}×, "
                f"{held[side.name] / max(side.cpu_s, 1e-9):.0%} of its CPU)" for side in sides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
