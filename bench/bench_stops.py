"""What detecting arrivals on the vehicle costs the agent (agent/stops.py): the journal's CPU
time per commit with the stop watch and a route of 60 stops in the mailbox, against the same
commits without it, same run, same directory.

    .venv/bin/python bench/bench_stops.py [--commits 3000] [--stops 60]

Each commit holds what the agent's group commit holds at 10 Hz GPS and the default 200 ms
interval: 2 positions (a drive through the route's stops, so the detectors work). CPU time
(user + system, `time.process_time`) leaves the fsync waits out: the same in both runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.journal import Journal  # noqa: E402
from agent.mailbox import Mailbox  # noqa: E402
from agent.readings import Position  # noqa: E402
from agent.stops import StopWatch  # noqa: E402
from agent.vehicle_db import open_vehicle_db  # noqa: E402

T0 = 1_796_000_000_000
PER_COMMIT = 2


def route(n_stops: int) -> dict:
    return {"route_id": "r1", "version": 1, "dwell_s": 3,
            "shift": {"start_ms": T0, "end_ms": T0 + 9 * 3_600_000},
            "stops": [{"job_id": f"j{i}", "name": f"Stop {i}", "address": "Street 1",
                       "lat": 60.17 + i * 0.002, "lon": 24.94, "radius_m": 50,
                       "windows": [], "service_s": 300, "notes": "", "contact": {}}
                      for i in range(n_stops)]}


def drive(n: int, n_stops: int) -> list[Position]:
    """North along the stops at ~7 m per fix (10 Hz at 25 km/h)."""
    span = n_stops * 0.002
    return [Position(T0 + i * 100, 60.17 + span * i / n, 24.94) for i in range(n)]


def run(path: Path, fixes: list[Position], watch: bool, n_stops: int) -> tuple[float, int]:
    journal = Journal(str(path), max_mb=0, stop_watch=StopWatch() if watch else None)
    vdb = open_vehicle_db(str(path))
    if watch:
        Mailbox(vdb).set_route(route(n_stops), T0)
    t = time.process_time()
    for i in range(0, len(fixes), PER_COMMIT):
        journal.append(fixes[i:i + PER_COMMIT])
    cpu = time.process_time() - t
    found = journal.stop_watch.detected if journal.stop_watch else 0
    journal.close()
    vdb.close()
    return cpu, found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", type=int, default=3000)
    p.add_argument("--stops", type=int, default=60)
    args = p.parse_args()
    fixes = drive(args.commits * PER_COMMIT, args.stops)
    tmp = Path(tempfile.mkdtemp(prefix="bench-stops-"))
    try:
        base, _ = run(tmp / "plain.sqlite", fixes, False, args.stops)
        with_watch, found = run(tmp / "watch.sqlite", fixes, True, args.stops)
    finally:
        shutil.rmtree(tmp)
    per = 1e6 / args.commits
    print(f"{args.commits} commits of {PER_COMMIT} positions, route of {args.stops} stops")
    print(f"  journal alone      {base * per:8.0f} µs CPU per commit")
    print(f"  with stop watch    {with_watch * per:8.0f} µs CPU per commit "
          f"({found} detections)")
    print(f"  ratio              {with_watch / base:8.2f}×; added "
          f"{(with_watch - base) * per:.0f} µs per commit, "
          f"{(with_watch - base) * per * 5 / 1e4:.2f} % of a core at 5 commits/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
