"""`python -m backend [--road-network FILE] jobs learn-speeds [--days 28]`: learn per-segment,
per-hour-of-week speeds from the stored positions of every vehicle (speeds.py) and keep them
beside the road graph's cache, where the backend's live ETAs find them at their next start
(run it daily, e.g. from a systemd timer)."""

from __future__ import annotations

import json
from pathlib import Path

DAY_MS = 86_400_000
# History read per vehicle and request: a day of 1 Hz positions (~86,400 rows) at most.
READ_SPAN_MS = DAY_MS
MAX_DAYS = 366


def add_learn_parser(jsub) -> None:
    p = jsub.add_parser("learn-speeds", help="learn road speeds per segment and hour of the "
                        "week from the fleet's stored positions (for live ETAs)")
    p.add_argument("--days", type=int, default=28, help="history to learn from (default 28)")


async def learn_from_store(store, road_matrix, from_ms: int, to_ms: int):
    """A SpeedLearner fed with every vehicle's positions in [from_ms, to_ms), a day a read."""
    from .speeds import SpeedLearner

    learner = SpeedLearner(road_matrix)
    for vid in sorted({p["vehicle_id"] for p in await store.last_positions()}):
        t = from_ms
        while t < to_ms:
            rows = await store.route(vid, t, min(t + READ_SPAN_MS, to_ms))
            learner.add_track([(p["time_ms"], p["lat"], p["lon"]) for p in rows])
            t += READ_SPAN_MS
    return learner


async def run_learn(args, store, now_ms: int, out, err) -> int:
    from .roads import default_cache_dir
    from .solver_worker import travel_source
    from .speeds import speeds_path

    if not 1 <= args.days <= MAX_DAYS:
        print(f"learn-speeds: --days 1 to {MAX_DAYS}", file=err)
        return 2
    road = getattr(args, "road_network", None)
    if not road:
        print("learn-speeds: needs a road network (--road-network FILE.osm.pbf)", file=err)
        return 2
    cache = Path(args.road_cache_dir) if getattr(args, "road_cache_dir", None) \
        else default_cache_dir()
    rm = travel_source(Path(road), cache)
    learner = await learn_from_store(store, rm, now_ms - args.days * DAY_MS, now_ms)
    path = speeds_path(cache, rm.graph.sha256)
    learner.speeds.save(path)
    print(json.dumps({"fix_pairs": learner.pairs, "observations": learner.matched,
                      "segments": learner.speeds.segments_seen,
                      "of_segments": rm.graph.segment_count, "file": str(path)}), file=out)
    return 0
