"""ETA error of the live ETAs (backend/dispatch/live_eta.py) with speeds learned from the
fleet's history, with the road classes' static speeds, and the naive "straight-line distance ÷
current speed", on replayed drives.

    .venv/bin/python bench/bench_eta_error.py [--drives 6] [--history 24]

Learned speeds (backend/dispatch/speeds.py) come from `--history` other drives of the same
kind (other seeds, the same hours of the week), matched to the graph as the backend does; the
drives measured are not among them.

Each drive is a van of the demo's day (hil/demo_dispatch.py) on central Helsinki's roads:
depot → 6 stops → depot along the graph's shortest paths, played by hil.gps_sim's route player
at 1 Hz (its speed varies ±60 % over minutes, as traffic would; it stays at each stop). The
true arrival at a stop is the first fix within 50 m of it. Every 30 s of the drive, each stop
still ahead gets an ETA from both methods; its error is |ETA − true arrival|, bucketed by the
true horizon (10 ± 1 and 30 ± 2 minutes ahead). The naive method sums, for the stops ahead,
the straight-line legs ÷ the current speed (service times included, as ours does); a
stopped vehicle's speed counts as 1 km/h, and the samples while moving are also shown apart
(the naive method's best case).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.dispatch.live_eta import RouteEtaTracker  # noqa: E402
from backend.dispatch.matrix import RoadMatrix  # noqa: E402
from backend.dispatch.model import Job, JobState, Shift  # noqa: E402
from backend.dispatch.roads import haversine_m, load_road_graph  # noqa: E402
from backend.dispatch.speeds import LearnedTravel, SpeedLearner  # noqa: E402
from hil import demo_dispatch  # noqa: E402
from hil.gps_sim import fixes  # noqa: E402

STOPS = 6
RADIUS_M = 50.0
SAMPLE_EVERY_S = 30
HORIZONS = {"10 min": (540, 660), "30 min": (1680, 1920)}
# Samples at this speed or more count as moving (the naive method needs a speed to divide by).
MOVING_KMH = 5.0
T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
T0_MS = int(T0.timestamp() * 1000)
HISTORY_SEED = 1000  # history drives are seeds 1001…, the measured ones 1…


def drive(graph, seed: int, tmp: Path):
    jobs = demo_dispatch.day_jobs(graph, STOPS, Shift(0, 8 * 3_600_000),
                                  seed=seed)
    jobs = [Job(j.id, j.place, service_s=demo_dispatch.DWELL_S) for j in jobs]
    depot = demo_dispatch.depot_point(graph)
    points, at = demo_dispatch.road_path(graph, [depot, *[j.place.point for j in jobs], depot])
    path = tmp / f"drive-{seed}.json"
    import json

    path.write_text(json.dumps({"points": points,
                                "dwell": [[i, demo_dispatch.DWELL_S] for i in at[1:-1]]}))
    stream = fixes("harbour", 0.0, 1.0, T0, 30.0, route_file=str(path))
    track = []
    arrived: dict[str, int] = {}
    for n in range(6 * 3600):
        f = next(stream)
        track.append((n, f.lat, f.lon, f.speed_kmh))
        nxt = next((j for j in jobs if j.id not in arrived), None)
        if nxt is None:
            break
        if haversine_m(f.lon, f.lat, nxt.place.point.lon, nxt.place.point.lat) <= RADIUS_M:
            arrived[nxt.id] = n
    return jobs, track, arrived


def learn(graph, rm, history: int, tmp: Path) -> LearnedTravel:
    learner = SpeedLearner(rm)
    for seed in range(HISTORY_SEED + 1, HISTORY_SEED + history + 1):
        _, track, _ = drive(graph, seed, tmp)
        learner.add_track([(T0_MS + n * 1000, lat, lon) for n, lat, lon, _ in track])
    print(f"learned from {history} drives: {learner.matched} of {learner.pairs} fix pairs on "
          f"{learner.speeds.segments_seen} of {graph.segment_count} segments")
    return LearnedTravel(rm, learner.speeds)


def run(drives: int, history: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        graph = load_road_graph(demo_dispatch.extract(), Path(tmp))
        rm = RoadMatrix(graph)
        learned = learn(graph, rm, history, Path(tmp))
        methods = ("learned", "static", "naive")
        errors = {h: {m + suffix: [] for suffix in ("", ", moving") for m in methods}
                  for h in HORIZONS}
        for seed in range(1, drives + 1):
            jobs, track, arrived = drive(graph, seed, Path(tmp))
            points = [(j.place.point.lon, j.place.point.lat) for j in jobs]
            trackers = {}
            for name, travel in (("static", lambda t: rm), ("learned", learned.at)):
                legs = travel(T0_MS).matrix(points).seconds
                trackers[name] = (RouteEtaTracker("r", "v", jobs, legs.tolist(),
                                                  travel(T0_MS).basis), travel)

            for n, lat, lon, speed in track[::SAMPLE_EVERY_S]:
                done = [j for j in jobs if arrived.get(j.id, math.inf) + j.service_s <= n]
                ahead = [j for j in jobs if j.id in arrived and arrived[j.id] > n]
                if not ahead:
                    continue
                estimates = {}
                for name, (tr, travel) in trackers.items():
                    for j in done:
                        tr.set_state(j.id, JobState.COMPLETED)
                    m = travel(T0_MS + n * 1000)

                    def first_leg(la, lo, job, m=m):
                        return float(m.matrix([(lo, la), (job.place.point.lon,
                                                          job.place.point.lat)]).seconds[0, 1])

                    live = tr.compute(n * 1000, lat, lon, n * 1000, first_leg)
                    estimates[name] = {s.job_id: s.arrival_ms / 1000 for s in live.eta.stops}
                v = max(speed, 1.0) / 3.6
                t, here = float(n), (lat, lon)
                naive = {}
                for j in ahead:
                    p = j.place.point
                    t += float(haversine_m(here[1], here[0], p.lon, p.lat)) / v
                    naive[j.id] = t
                    t += j.service_s
                    here = (p.lat, p.lon)
                estimates["naive"] = naive
                for j in ahead:
                    true_h = arrived[j.id] - n
                    for h, (lo, hi) in HORIZONS.items():
                        if not lo <= true_h <= hi or any(j.id not in e
                                                         for e in estimates.values()):
                            continue
                        for name, e in estimates.items():
                            err = abs(e[j.id] - arrived[j.id])
                            errors[h][name].append(err)
                            if speed >= MOVING_KMH:  # the naive method's best case
                                errors[h][name + ", moving"].append(err)
        return errors


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drives", type=int, default=6)
    p.add_argument("--history", type=int, default=24, help="drives to learn speeds from")
    a = p.parse_args()
    errors = run(a.drives, a.history)
    print(f"ETA error on {a.drives} replayed drives (seconds, |ETA − true arrival|):")
    for h, by in errors.items():
        for method, xs in by.items():
            if xs:
                print(f"  {h} ahead, {method:<14} n={len(xs):4d}  p50 {np.percentile(xs, 50):7.0f}"
                      f"  p90 {np.percentile(xs, 90):7.0f}")
        for suffix in ("", ", moving"):
            for base in ("static", "naive"):
                o, nv = by["learned" + suffix], by[base + suffix]
                if o and nv:
                    print(f"  {h} ahead{suffix}: learned/{base} p50 "
                          f"{np.percentile(o, 50) / np.percentile(nv, 50):.2f}, p90 "
                          f"{np.percentile(o, 90) / np.percentile(nv, 90):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
