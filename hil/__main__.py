"""`python -m hil SCENARIO [options]`: run a HIL scenario and print its report (hil/scenarios.py).

    python -m hil drive                      # a drive, nothing in the way
    python -m hil tunnel --blackout-s 120    # a 2-minute tunnel (900: 15 minutes)
    python -m hil handover --handovers 20    # the vehicle's address changes mid-stream
    python -m hil handover --netns           # ... between two uplinks in namespaces (root)
    python -m hil crash --crashes 5          # kill -9 of the agent at random moments
    python -m hil reboot --reboots 5         # systemd stops it, the vehicle boots again
    python -m hil power-cut --cuts 20        # kill -9 + what was not fsynced is lost
    python -m hil disk-full --full-s 30      # the journal's file system is full (root)
    python -m hil drive --nmea my.nmea       # your receiver's capture instead of the simulator
    python -m hil drive --candump my.log --dbc my.dbc   # and your CAN bus

docs/hil.md explains each scenario and its report.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from hil.rig import as_json
from hil.scenarios import DISTURB, run

SCENARIOS = tuple(DISTURB)
# GPS time beyond the disturbance: the agent's start until its first stored reading (when the
# disturbance begins) and live readings after the drain (the agent is back within seconds)
MARGIN_S = 15.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--fixes", type=int, default=60, help="simulated fixes to send")
    p.add_argument("--rate", type=float, default=2.0, help="simulated fixes per second")
    p.add_argument("--blackout-s", type=float, default=120.0, help="tunnel length")
    p.add_argument("--handovers", type=int, default=10, help="address changes (handover)")
    p.add_argument("--netns", action="store_true",
                   help="handover: between two uplinks in network namespaces (root)")
    p.add_argument("--crashes", type=int, default=3, help="kill -9 of the agent, this often")
    p.add_argument("--reboots", type=int, default=3, help="reboots of the vehicle")
    p.add_argument("--cuts", type=int, default=20, help="power cuts of the vehicle")
    p.add_argument("--boot-s", type=float, default=2.0,
                   help="reboot/power-cut: seconds until the vehicle is up again")
    p.add_argument("--full-s", type=float, default=30.0, help="disk-full: how long it stays full")
    p.add_argument("--fs-mb", type=int, default=8, help="disk-full: the journal's tmpfs size")
    p.add_argument("--seed", type=int, default=1, help="when the disturbances happen")
    p.add_argument("--nmea", help="your NMEA capture, played at 9600 baud instead of the sim")
    p.add_argument("--candump", help="your candump -L log, replayed as a CAN bus")
    p.add_argument("--dbc", action="append", default=[], help="DBC file(s) for --candump")
    p.add_argument("--dir", help="working directory (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="the report as one JSON line")
    args = p.parse_args(argv)
    if args.candump and not args.dbc:
        p.error("--candump needs --dbc")
    if args.netns and args.scenario != "handover":
        p.error("--netns is for handover (the other scenarios use the link emulator)")
    args.fixes = max(args.fixes, int((_disturbance_s(args) + MARGIN_S) * args.rate))
    with tempfile.TemporaryDirectory(prefix="hil-") as tmp:
        workdir = Path(args.dir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run(args.scenario, args, workdir))
    print(as_json(report) if args.json else report.text(), flush=True)
    return 0 if report.ok else 1


def _disturbance_s(args) -> float:
    """How long the scenario disturbs at most: the simulator must outlast it."""
    restart = 1.5 + 2.5  # the agent's start-up, plus the wait before a kill (up to 3 s)
    return {"tunnel": args.blackout_s, "handover": 2.0 * args.handovers,
            "crash": (restart + 1.0) * args.crashes,
            "reboot": (restart + args.boot_s + 2.0) * args.reboots,
            "power-cut": (restart + args.boot_s) * args.cuts,
            "disk-full": args.full_s + 10}.get(args.scenario, 0.0)


if __name__ == "__main__":
    sys.exit(main())
