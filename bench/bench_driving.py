"""Weekly driving scorecards: computed from the readings per request, against days folded and
kept (backend/driving/report.py, fold.py), on the same store in the same run.

    .venv/bin/python bench/bench_driving.py [--vehicles 10] [--days 7] [--minutes 60]
                                            [--db sqlite|postgresql://...]

Each vehicle drives `minutes` a day (hil/drives.py: an eventful trip, calm trips, an idling
stretch; positions and CAN signals at 1 Hz) for `days` whole UTC days. Timed, for the week:
1. per request: `fleet_window(keep=False)`, every day read and detected from its readings
   (what every request did before days were kept);
2. first request with keeping: the same, plus fingerprints and storing each day's fold;
3. kept: the next requests (the fleet manager's weekly look): fingerprints and kept days;
4. after a late reading for one vehicle-day: that day folds again, the rest is kept;
and the week's fuel (`fuel_window`: trips, refuels and drops, idling), per request and kept
(the same kept days hold it).
Prints each time, per vehicle-day, and the ratios to (1). Bounded: about two minutes at the
defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.driving import report  # noqa: E402
from backend.driving.thresholds import parse_driving  # noqa: E402
from backend.store import open_store  # noqa: E402
from backend.store.base import StoredReading  # noqa: E402
from hil.drives import DriveBuilder, calm_trip  # noqa: E402

DAY = 86_400_000
DAY0 = 1_790_000_000_000 // DAY * DAY
CFG = parse_driving(None)


def day_drive(seed: int, minutes: int) -> DriveBuilder:
    """`minutes` of driving from 07:00 on day 0: harsh moments, calm trips, some idling."""
    b = DriveBuilder(DAY0 + 7 * 3_600_000, seed=seed, driver=f"D-{seed}").start_engine()
    b.change_speed(40, 80).cruise(120).change_speed(3, 20, harsh="brake").cruise(60)
    b.idle(420, event=True)
    while (b.t_ms - b.start_ms) < minutes * 60_000:
        calm_trip(b, minutes=15)
        b.idle(60)
    return b


def rows(vehicle: str, b: DriveBuilder, day: int) -> list[StoredReading]:
    shift, base = day * DAY, day * 1_000_000
    out = [StoredReading(vehicle, 1, base + i, p["time_ms"] + shift, "pos", lat=p["lat"],
                         lon=p["lon"], speed_kmh=p["speed_kmh"], course_deg=p["course_deg"],
                         fix=3, received_ms=1) for i, p in enumerate(b.drive.positions)]
    out += [StoredReading(vehicle, 1, base + 500_000 + i, t + shift, "can", data=sig,
                          received_ms=1) for i, (t, sig) in enumerate(b.drive.signals)]
    return out


async def timed(coro_fn, repeat: int) -> float:
    """The median wall time of `repeat` runs, seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await coro_fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def run(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-driving-") as tmp:
        url = f"sqlite://{tmp}/fleet.db" if args.db == "sqlite" else args.db
        store = open_store(url)
        await store.open()
        try:
            vehicles = [f"truck-{i + 1}" for i in range(args.vehicles)]
            t0 = time.perf_counter()
            n = 0
            for i, v in enumerate(vehicles):
                await store.add_vehicle(v)
                b = day_drive(i + 1, args.minutes)
                for d in range(args.days):
                    batch = rows(v, b, d)
                    n += len(batch)
                    for k in range(0, len(batch), 5000):
                        await store.write(batch[k:k + 5000], [])
            print(f"stored {n:,} readings ({args.vehicles} vehicles × {args.days} days × "
                  f"{args.minutes} min at 1 Hz) in {time.perf_counter() - t0:.1f} s")
            end = DAY0 + args.days * DAY
            vd = args.vehicles * args.days

            async def ask(keep: bool):
                return await report.fleet_window(store, CFG, vehicles, DAY0, end, keep=keep)

            live = await timed(lambda: ask(False), args.repeat)
            first = await timed(lambda: ask(True), 1)
            kept = await timed(lambda: ask(True), args.repeat)
            late = StoredReading(vehicles[0], 2, 1, DAY0 + 12 * 3_600_000, "pos", lat=53.6,
                                 lon=10.0, speed_kmh=0.0, course_deg=0.0, fix=3, received_ms=2)
            await store.write([late], [])
            refold = await timed(lambda: ask(True), 1)
            same = (await ask(True))["events"] == (await ask(False))["events"]

            async def fuel(keep: bool):
                return await report.fuel_window(store, CFG, vehicles, DAY0, end, keep=keep)

            fuel_live = await timed(lambda: fuel(False), args.repeat)
            fuel_kept = await timed(lambda: fuel(True), args.repeat)
            same = same and await fuel(True) == await fuel(False)
            for name, t, base in (("per request (from the readings)", live, live),
                                  ("first request, keeping the days", first, live),
                                  ("kept days (the weekly look)", kept, live),
                                  ("after a late reading (one day folds again)", refold, live),
                                  ("fuel, per request (from the readings)", fuel_live,
                                   fuel_live),
                                  ("fuel, kept days", fuel_kept, fuel_live)):
                print(f"{name:45s} {t * 1000:9.0f} ms  {t * 1000 / vd:7.2f} ms/vehicle-day  "
                      f"{t / base:6.3f}× per request")
            print(f"kept answer == per-request answer: {same}")
            print(f"100 vehicles × 7 days, extrapolated: per request {live / vd * 700:.1f} s, "
                  f"kept {kept / vd * 700:.2f} s")
        finally:
            await store.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vehicles", type=int, default=10)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL")
    asyncio.run(run(p.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
