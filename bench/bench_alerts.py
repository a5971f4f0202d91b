"""Alert evaluation cost next to the store write it follows (SQLite, synchronous=FULL).

    .venv/bin/python bench/bench_alerts.py [--minutes 60] [--batch 50]

One vehicle, one position per second plus a CAN snapshot every 5 s, with overspeed episodes,
a depot geofence and a coolant episode. In the same run and on the same store kind:
1. baseline: `store.write` of the batches alone (what the gateway does today per batch);
2. live: write + `AlertEngine.on_committed` of each batch in device-time order (the live path);
3. backlog: the same readings as a live-first drain after an outage (the newest reading, then
   the backlog oldest first), so every batch is a backfill evaluated from a checkpoint;
4. reconnect: the first third live, in order; the rest as the agent drains it after an outage
   (its newest position at the head of the first batch, then the backlog oldest first), to an
   engine that kept the vehicle's state across the reconnect.
Prints readings/s of each and the ratios to the baseline. Bounded: about a minute.
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

from backend.alerts import AlertEngine, parse_rules  # noqa: E402
from backend.alerts.engine import HOLD_GAP  # noqa: E402
from backend.store.base import AlertQuery, StoredReading  # noqa: E402
from backend.store.sqlite import SqliteStore  # noqa: E402
from hil.demo import DEPOT, DEPOT_CENTER  # noqa: E402

T0 = 1_790_000_000_000


def readings(minutes: int) -> list[StoredReading]:
    out, seq = [], 0
    for t in range(minutes * 60):
        seq += 1
        inside = (t // 300) % 2 == 1  # five minutes in the depot, five out
        lat = DEPOT_CENTER[0] if inside else DEPOT_CENTER[0] + 0.02
        speed = 110.0 if t % 240 >= 200 else 50.0
        out.append(StoredReading("truck-1", 1, seq, T0 + 1000 * t, "pos", lat=lat,
                                 lon=DEPOT_CENTER[1], speed_kmh=speed, received_ms=1))
        if t % 5 == 0:
            seq += 1
            out.append(StoredReading("truck-1", 1, seq, T0 + 1000 * t + 500, "can",
                                     data={"EngCoolantTemp": 110 if t % 900 < 60 else 90,
                                           "FuelLevel1": 50}, received_ms=1))
    return out


async def run(batches: list[list[StoredReading]], evaluate: bool, hold: bool = False) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "bench.db"))
        await store.open()
        await store.put_geofence("depot", "Depot", DEPOT)
        engine = AlertEngine(store, parse_rules({}), hold_gap=HOLD_GAP if hold else None)
        await engine.start(T0)
        n = sum(len(b) for b in batches)
        t = time.perf_counter()
        for b in batches:
            await store.write(b, [])
            if evaluate:
                await engine.on_committed(b, T0)
        elapsed = time.perf_counter() - t
        if evaluate:
            alerts = len(await store.list_alerts(AlertQuery(limit=10_000)))
            print(f"    ({alerts} alerts, {engine.stats['replays']} replays, "
                  f"{engine.stats['readings_evaluated']:,} readings evaluated of {n:,}, "
                  f"{engine.stats['held']} held)")
        await store.close()
        return n / elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--batch", type=int, default=50)
    args = p.parse_args()
    rs = readings(args.minutes)
    chunks = [rs[i:i + args.batch] for i in range(0, len(rs), args.batch)]
    newest = rs[-1:]
    backlog = [newest] + [rs[:-1][i:i + args.batch] for i in range(0, len(rs) - 1, args.batch)]
    base = asyncio.run(run(chunks, False))
    live = asyncio.run(run(chunks, True))
    drain = asyncio.run(run(backlog, True))
    third = len(rs) // 3
    rest = rs[third:]
    head = [r for r in rest if r.kind == "pos"][-1]
    rest = [r for r in rest if r is not head]
    reconnect = ([rs[i:min(i + args.batch, third)] for i in range(0, third, args.batch)]
                 + [[head, *rest[:args.batch - 1]]]
                 + [rest[i:i + args.batch] for i in range(args.batch - 1, len(rest), args.batch)])
    again = asyncio.run(run(reconnect, True))
    held = asyncio.run(run(reconnect, True, hold=True))
    print(f"{len(rs)} readings in batches of {args.batch}")
    print(f"{'measure':52} {'readings/s':>11} {'ratio':>6}")
    for name, value in (("store.write alone (baseline)", base),
                        ("write + alerts, in order (live path)", live),
                        ("write + alerts, live-first drain (backfill)", drain),
                        ("write + alerts, drain after a reconnect, no holding", again),
                        ("the same, live-first readings held (default)", held)):
        print(f"{name:52} {value:11,.0f} {value / base:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
