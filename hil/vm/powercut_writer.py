"""Runs inside the VM: report what survived the last power cut, then journal until the next.

Each boot prints, on the serial console:
  HIL:HAVE <first> <last> <count> <integrity>   what the journal holds (or HIL:HAVE none)
  HIL:ACC <first> <last>                         after each append returned (= accepted)
The host resets the VM at random moments and checks every ACC survives in the next HAVE.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from agent.journal import Journal  # noqa: E402
from agent.readings import Position  # noqa: E402

PATH = os.environ.get("JOURNAL", "/hil/data/journal.sqlite")
BATCH = 20
MAX_SECONDS = 600  # never run forever if the host forgets us


def say(line: str) -> None:
    sys.stdout.write("HIL:" + line + "\n")
    sys.stdout.flush()


def report() -> None:
    if not os.path.exists(PATH):
        say("HAVE none")
        return
    db = sqlite3.connect(PATH)  # opening also recovers the WAL, as the agent would
    try:
        first, last, count = db.execute(
            "SELECT min(seq), max(seq), count(*) FROM readings").fetchone()
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    say(f"HAVE {first or 0} {last or 0} {count} {check.replace(' ', '_')}")


def main() -> None:
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    report()
    j = Journal(PATH)
    say(f"OPEN {j.epoch} {j.next_seq} {j.moved_aside or '-'}")
    ts = int(time.time() * 1000)
    end = time.monotonic() + MAX_SECONDS
    while time.monotonic() < end:
        batch = []
        for _ in range(BATCH):
            ts += 100
            batch.append(Position(ts_ms=ts, lat=59.3, lon=18.0, speed_kmh=50.0, sats=9))
        seqs = j.append(batch)
        say(f"ACC {seqs[0]} {seqs[-1]}")
    j.close()


if __name__ == "__main__":
    main()
