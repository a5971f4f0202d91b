"""`python -m hil SCENARIO [options]`: run a HIL scenario and print its report (hil/scenarios.py).

    python -m hil drive                      # a drive, nothing in the way
    python -m hil tunnel --blackout-s 120    # a 2-minute tunnel (900: 15 minutes)
    python -m hil crash --crashes 5          # kill -9 of the agent at random moments
    python -m hil drive --nmea my.nmea       # your receiver's capture instead of the simulator
    python -m hil drive --candump my.log --dbc my.dbc   # and your CAN bus

The scenarios that need root and network namespaces or the Debian VM have their own entry
points: handover `python -m bench.link_roles` / tests/net/test_netns.py; reboot and power-cut
(×20) tests/journal (VM); disk-full tests/journal; `make test` runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from hil.scenarios import as_json, run

SCENARIOS = ("drive", "tunnel", "crash")
# GPS time beyond a tunnel: the agent's start until its first stored reading (when the blackout
# begins; a few seconds) and live readings after it (the agent is back within seconds)
TUNNEL_TAIL_S = 15.0
ELSEWHERE = {
    "handover": "tests/net/test_netns.py and `python -m bench.link_roles` (root, namespaces)",
    "reboot": "tests/test_deb_vm.py and the power-cut tests in tests/journal (Debian VM)",
    "power-cut": "the power-cut tests in tests/journal (Debian VM, ×20)",
    "disk-full": "tests/journal (ENOSPC on a real small file system)",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=[*SCENARIOS, *ELSEWHERE])
    p.add_argument("--fixes", type=int, default=60, help="simulated fixes to send")
    p.add_argument("--rate", type=float, default=2.0, help="simulated fixes per second")
    p.add_argument("--blackout-s", type=float, default=120.0, help="tunnel length")
    p.add_argument("--crashes", type=int, default=3, help="kill -9 of the agent, this often")
    p.add_argument("--seed", type=int, default=1, help="when the crashes happen")
    p.add_argument("--nmea", help="your NMEA capture, played at 9600 baud instead of the sim")
    p.add_argument("--candump", help="your candump -L log, replayed as a CAN bus")
    p.add_argument("--dbc", action="append", default=[], help="DBC file(s) for --candump")
    p.add_argument("--dir", help="working directory (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="the report as one JSON line")
    args = p.parse_args(argv)
    if args.scenario in ELSEWHERE:
        print(f"{args.scenario}: runs in {ELSEWHERE[args.scenario]}", file=sys.stderr)
        return 2
    if args.candump and not args.dbc:
        p.error("--candump needs --dbc")
    if args.scenario == "tunnel":  # the simulator must outlast the disturbance
        args.fixes = max(args.fixes, int((args.blackout_s + TUNNEL_TAIL_S) * args.rate))
    if args.scenario == "crash":
        args.fixes = max(args.fixes, int((4.5 * args.crashes + 10) * args.rate))
    with tempfile.TemporaryDirectory(prefix="hil-") as tmp:
        workdir = Path(args.dir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run(args.scenario, args, workdir))
    print(as_json(report) if args.json else report.text(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
