"""The gateway's work per reading in a storm drain, stage by stage, without sockets (issue 29).

    .venv/bin/python bench/bench_reading_path.py [--batch 200] [--rounds 5] [--profile]

Batches as a storm drain brings them (the load tester's readings: positions with every
quantity and every 4th a CAN snapshot of 8 signals, `--batch` readings each, compressed as the
agent sends them) go through the gateway's per-reading stages, each timed apart, in µs per
reading (best of `--rounds` interleaved rounds, so a busy machine slows every stage alike):
- decode: the session's frame decoder (DEFLATE piece, strict CBOR, each reading's envelope);
- validate + rows: `GatewayProtocol._validate`'s work (every field of every reading checked
  against its kind, then the rows the writer stores);
- alerts: the alert engine's live path (`AlertEngine.on_committed` against a store that
  is never called: every vehicle's state cached, as after its first batch) with the default
  rules and two geofences, PostgreSQL's read-back view (`as_read_back`);
- writer rows: what the PostgreSQL writer builds per transaction before COPY (the routing
  hint, the binary COPY records, the newest position/signal arrays).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.alerts.engine import AlertEngine, Cached  # noqa: E402
from backend.alerts.evaluate import Evaluator, Fence  # noqa: E402
from backend.alerts.rules import RuleSet  # noqa: E402
from backend.store.committed import CommittedRanges  # noqa: E402
from backend.store.postgres import readings as pg_readings  # noqa: E402
from backend.store.postgres.alerts import PostgresAlerts  # noqa: E402
from backend.store.rows import StoredReading  # noqa: E402
from geostream.codec import FrameDecoder, encode  # noqa: E402
from geostream.deflate import Deflater, Inflater  # noqa: E402
from geostream.limits import MAX_MESSAGE_BYTES  # noqa: E402
from geostream.messages import Batch  # noqa: E402
from geostream.schema import content_problem  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402

VEHICLES = 20
NOW_MS = 1_765_000_000_000


def make_batches(batch: int, per_vehicle: int) -> list[tuple[str, list[dict]]]:
    """(vehicle, readings) in the order a drain sends them: each vehicle's backlog in batches."""
    out = []
    for v in range(VEHICLES):
        sim = SimVehicle(f"v{v:03d}", "", 1, 10.0, 0.0, NOW_MS - 600_000, seed=v)
        wire = [sim.wire_reading(q) for q in range(1, per_vehicle + 1)]
        out += [(sim.vehicle_id, wire[i:i + batch]) for i in range(0, per_vehicle, batch)]
    return out


class _Store(PostgresAlerts):
    """Only the read-back view; the live path calls nothing else (asserted by the bench)."""

    def __init__(self) -> None:  # no pool
        pass


def fences() -> list[Fence]:
    def box(lat0, lat1, lon0, lon1):
        return lambda lat, lon: lat0 <= lat <= lat1 and lon0 <= lon <= lon1
    return [Fence("depot", box(53.5, 53.6, 9.9, 10.1)),
            Fence("city", box(53.3, 53.8, 9.6, 10.4), speed_limit_kmh=50.0)]


def stage_decode(frames: list[bytes]) -> list[Batch]:
    dec = FrameDecoder(MAX_MESSAGE_BYTES, Inflater(MAX_MESSAGE_BYTES))
    out = []
    for f in frames:
        out += dec.feed(f)
    return out


def stage_validate(vehicles: list[str], batches: list[Batch]) -> list[list[StoredReading]]:
    """What GatewayProtocol._validate does for a batch without invalid readings."""
    out = []
    for vehicle, batch in zip(vehicles, batches, strict=True):
        good = []
        for r in batch.readings:
            problem = content_problem(r, NOW_MS)
            assert problem is None, problem
            good.append(StoredReading.from_wire(vehicle, batch.epoch, r, NOW_MS))
        out.append(good)
    return out


def stage_alerts(rows: list[list[StoredReading]]) -> AlertEngine:
    engine = AlertEngine(_Store(), RuleSet())
    engine.fences = fences()
    for vehicle in {b[0].vehicle_id for b in rows}:  # as after a first (replayed) batch
        engine._cache[vehicle] = Cached(0, Evaluator(vehicle, RuleSet()).take_state(), NOW_MS, {})

    async def run():
        for good in rows:
            await engine.on_committed(good, NOW_MS)
    asyncio.run(run())
    return engine


def stage_writer(rows: list[list[StoredReading]]) -> None:
    committed = CommittedRanges()
    for good in rows:
        plan = pg_readings.write_plan(good, committed.maybe_stored)
        for (vehicle, epoch), seqs in plan.committed.items():
            committed.add(vehicle, epoch, seqs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--per-vehicle", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one round of each")
    a = ap.parse_args()
    sent = make_batches(a.batch, a.per_vehicle)
    n = sum(len(r) for _, r in sent)
    deflater = Deflater()
    frames = [encode(Batch(epoch=1, readings=tuple(r)), deflater) for _, r in sent]
    vehicles = [v for v, _ in sent]
    best: dict[str, float] = {}
    for _ in range(a.rounds):
        t = time.perf_counter()
        batches = stage_decode(frames)
        t1 = time.perf_counter()
        rows = stage_validate(vehicles, batches)
        t2 = time.perf_counter()
        engine = stage_alerts(rows)
        t3 = time.perf_counter()
        stage_writer(rows)
        t4 = time.perf_counter()
        for name, s in (("decode", t1 - t), ("validate + rows", t2 - t1), ("alerts", t3 - t2),
                        ("writer rows", t4 - t3)):
            best[name] = min(best.get(name, 1e9), s / n * 1e6)
    assert engine.stats["replays"] == 0 and engine.stats["readings_evaluated"] == n, engine.stats
    print(f"{n:,} readings in batches of {a.batch}, {VEHICLES} vehicles; µs per reading "
          f"(best of {a.rounds}):")
    for name, us in best.items():
        print(f"  {name:<18}{us:8.2f}")
    print(f"  {'total':<18}{sum(best.values()):8.2f}")
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        batches = stage_decode(frames)
        rows = stage_validate(vehicles, batches)
        stage_alerts(rows)
        stage_writer(rows)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
