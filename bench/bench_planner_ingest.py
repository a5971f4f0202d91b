"""Does planning cost ingestion its budget? Gateway ack p99 with and without a 1,000-job plan.

    .venv/bin/python bench/bench_planner_ingest.py [--vehicles 200] [--duration 30] [--rounds 2]

Rounds of three interleaved load-test runs (`python -m loadtest --vehicles N --rate 1
--duration S --db sqlite`): alone (the baseline of the same minutes); while the solver worker
(backend/dispatch/solver_worker.py: its own process, nice 19, one thread) plans 1,000 jobs on
50 vehicles on the Helsinki road network back to back; and the same plans at nice 0 (what the
nicing buys). Prints ack p50/p99, acked/s and plans finished per run, and p99 ratios against
the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import backend.dispatch.solver_worker as solver_worker  # noqa: E402
from backend.dispatch.planner import PlanRequest  # noqa: E402
from backend.dispatch.roads import build_road_graph, bundled_helsinki_extract  # noqa: E402
from bench.bench_planner import T0, instance  # noqa: E402


async def loadtest(vehicles: int, duration: int, out: Path) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", "--vehicles", str(vehicles), "--rate", "1",
        "--duration", str(duration), "--db", "sqlite", "--json", str(out), cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await proc.wait()
    return json.loads(out.read_text())


async def run(args, mode: str, request, tmp: Path, extract: Path) -> tuple[dict, int]:
    worker = solver_worker.SolverWorker(extract, tmp / "roads",
                                        nice=solver_worker.SOLVER_NICE if mode == "niced" else 0)
    plans = 0
    stop = asyncio.Event()

    async def planning():
        nonlocal plans
        while not stop.is_set():
            await worker.plan("bench", request)
            plans += 1

    task = asyncio.create_task(planning()) if mode != "alone" else None
    if task is not None:
        await worker._ensure_child()  # the child is up before the measured run starts
    try:
        report = await loadtest(args.vehicles, args.duration, tmp / f"{mode}.json")
    finally:
        stop.set()
        await worker.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return report, plans


async def main_async(args) -> int:
    extract = bundled_helsinki_extract()
    graph = build_road_graph(extract)
    _, jobs, vehicles = instance(graph, 1000, 50)
    request = PlanRequest(vehicles, tuple(jobs), T0, exploration=0)
    ratios: dict[str, list[float]] = {"niced": [], "nice 0": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for r in range(args.rounds):
            base = None
            for mode in ("alone", "niced", "nice 0"):
                report, plans = await run(args, mode, request, tmp, extract)
                p99 = report.get("ack_p99_ms")
                print(f"round {r + 1} {mode:7s}: ack p50 {report.get('ack_p50_ms'):.0f} ms, "
                      f"p99 {p99:.0f} ms, {report.get('acked_per_s'):.0f} acked/s, "
                      f"lost {report.get('lost')}, plans finished {plans}", flush=True)
                if mode == "alone":
                    base = p99
                elif base:
                    ratios[mode].append(p99 / base)
    for mode, rs in ratios.items():
        print(f"p99 with plans {mode} / alone: {', '.join(f'{x:.2f}×' for x in rs)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    subprocess.run([sys.executable, "-c", "import vroom"], check=True)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
