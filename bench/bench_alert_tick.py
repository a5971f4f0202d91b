"""The alert engine's cost per reading at 1 Hz: many vehicles, one reading each per tick.

    .venv/bin/python bench/bench_alert_tick.py [--vehicles 3000] [--seconds 10] [--tick 60]
        [--fences boxes|polygons|none]

The gateway hands the engine the rows one writer transaction committed (`--tick` readings,
one per vehicle at 1 Hz: at 3,000 vehicles and a transaction per 20 ms, ~60). The readings are
the load tester's (positions with every quantity, every 4th a CAN snapshot), the rules the
defaults, with a depot geofence and a town geofence with its own speed limit (`--limit`), so
some vehicles overspeed (`--fences`: those as Python tests, as stored polygons, or none as in
the load tester); every vehicle's state is cached, as after its first batch. Timed, in CPU µs
per reading (the process's CPU time: other processes' load counts less), best of `--rounds`
interleaved rounds:
- decode (the baseline): the session's frame decoder on the same readings, one per frame;
- alerts: `AlertEngine.on_committed` of each tick;
- alerts, full evaluation: the same with the quiet check switched off, so every vehicle goes
  through the evaluator (`Evaluator`, reconcile) in the tick's pass.
The store is never read; alert changes and checkpoints go to a store that drops them (the
writes are the database's cost, measured by bench_alerts.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.alerts import quiet as quiet_module  # noqa: E402
from backend.alerts.engine import AlertEngine, Cached  # noqa: E402
from backend.alerts.evaluate import Evaluator, Fence  # noqa: E402
from backend.alerts.fences import fences_from_rows  # noqa: E402
from backend.alerts.rules import RuleSet  # noqa: E402
from backend.store.rows import StoredReading  # noqa: E402
from geostream.codec import FrameDecoder, encode  # noqa: E402
from geostream.deflate import Deflater, Inflater  # noqa: E402
from geostream.limits import MAX_MESSAGE_BYTES  # noqa: E402
from geostream.messages import Batch  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402

NOW_MS = 1_765_000_000_000


class _Store:
    """Drops what the engine writes; the quiet path calls nothing."""

    async def save_alerts(self, upserts, retract, now_ms, checkpoints=None, moves=()):
        return []

    async def save_alert_checkpoints(self, points):
        return None


def fences(limit: float, kind: str = "boxes") -> list[Fence]:
    """boxes: a depot and a town with its own limit, as Python tests; polygons: the same
    rectangles as stored geofences (Shapely, as the gateway tests them); none: the load
    tester's (it defines no geofence)."""
    if kind == "none":
        return []
    if kind == "polygons":
        def area(lat0, lat1, lon0, lon1):
            return {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1],
                                                        [lon0, lat1], [lon0, lat0]]]}
        return fences_from_rows([
            {"geofence_id": "depot", "area": area(53.5, 53.6, 9.9, 10.1)},
            {"geofence_id": "town", "area": area(53.3, 53.8, 9.6, 10.4),
             "speed_limit_kmh": limit}])

    def box(lat0, lat1, lon0, lon1):
        return lambda lat, lon: lat0 <= lat <= lat1 and lon0 <= lon <= lon1
    return [Fence("depot", box(53.5, 53.6, 9.9, 10.1)),
            Fence("town", box(53.3, 53.8, 9.6, 10.4), speed_limit_kmh=limit)]


def make(vehicles: int, seconds: int) -> tuple[list[str], list[dict], list[StoredReading]]:
    sims = [SimVehicle(f"v{v:05d}", "", 1, 1.0, 0.0, NOW_MS - 600_000, seed=v)
            for v in range(vehicles)]
    ids, wire, rows = [], [], []
    for q in range(1, seconds + 1):
        for s in sims:
            w = s.wire_reading(q)
            ids.append(s.vehicle_id)
            wire.append(w)
            rows.append(StoredReading.from_wire(s.vehicle_id, 1, w, NOW_MS))
    return ids, wire, rows


def stage_decode(frames: list[bytes]) -> int:
    dec = FrameDecoder(MAX_MESSAGE_BYTES, Inflater(MAX_MESSAGE_BYTES))
    n = 0
    for f in frames:
        n += len(dec.feed(f))
    return n


def stage_alerts(ids: list[str], ticks: list[list[StoredReading]], limit: float,
                 kind: str = "boxes") -> AlertEngine:
    engine = AlertEngine(_Store(), RuleSet())
    engine.fences = fences(limit, kind)
    first = {}
    for tick in ticks:
        for r in tick:
            first.setdefault(r.vehicle_id, r)
    for vehicle in set(ids):  # as after a first batch, its side of each geofence known
        ev = Evaluator(vehicle, RuleSet(), engine.fences)
        r = first[vehicle]
        ev.feed(StoredReading(vehicle, 1, 0, NOW_MS - 700_000, "pos", lat=r.lat, lon=r.lon,
                              received_ms=NOW_MS))
        engine._cache[vehicle] = Cached(NOW_MS - 700_000, ev.take_state(), NOW_MS - 700_000,
                                        {})

    async def run() -> float:
        t = time.process_time()
        for tick in ticks:
            await engine.on_committed(tick, NOW_MS)
        return time.process_time() - t
    engine.stats["cpu_s"] = asyncio.run(run())  # the ticks alone, not the states' set-up
    return engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=3000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--tick", type=int, default=60)
    ap.add_argument("--limit", type=float, default=80.0, help="the town's speed limit")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fences", choices=("boxes", "polygons", "none"), default="boxes",
                    help="the geofences (see `fences`)")
    a = ap.parse_args()
    ids, wire, rows = make(a.vehicles, a.seconds)
    n = len(rows)
    deflater = Deflater()
    frames = [encode(Batch(epoch=1, readings=(w,)), deflater) for w in wire]
    ticks = [rows[i:i + a.tick] for i in range(0, n, a.tick)]
    quiet = quiet_module.QuietRules
    checks = {name: getattr(quiet, name) for name in ("feed", "feed_one") if hasattr(quiet, name)}
    best: dict[str, float] = {}
    stats: dict[str, dict] = {}
    for _ in range(a.rounds):
        for name in ("decode (baseline)", "alerts", "alerts, full evaluation"):
            for check, method in checks.items():  # off: every reading "might change an alert"
                setattr(quiet, check, (lambda self, *args, **kw: False)
                        if name == "alerts, full evaluation" else method)
            if name == "decode (baseline)":
                t = time.process_time()
                assert stage_decode(frames) == n
                cpu = time.process_time() - t
            else:
                stats[name] = stage_alerts(ids, ticks, a.limit, a.fences).stats
                cpu = stats[name]["cpu_s"]
            best[name] = min(best.get(name, 1e9), cpu / n * 1e6)
    for check, method in checks.items():
        setattr(quiet, check, method)
    for name in ("alerts", "alerts, full evaluation"):
        assert stats[name]["readings_evaluated"] == n and stats[name]["replays"] == 0, stats
    assert stats["alerts"]["alerts_opened"] == stats["alerts, full evaluation"]["alerts_opened"]
    base = best["decode (baseline)"]
    print(f"{n:,} readings: {a.vehicles:,} vehicles × {a.seconds} s at 1 Hz, ticks of {a.tick}, "
          f"geofences {a.fences}; CPU µs per reading (best of {a.rounds}) and ratio to decode:")
    for name, us in best.items():
        print(f"  {name:<26}{us:8.2f}{us / base:8.2f}×")


if __name__ == "__main__":
    main()
