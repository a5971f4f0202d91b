"""End to end on loopback: journal → QUIC → gateway → SQLite store, readings/s.

Baseline in the same run: raw sqlite3 `executemany` of the same rows into a table of the
store's shape, one transaction (what storing costs with no network, protocol or journal).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import AgentConfig, JournalConfig, ServerConfig  # noqa: E402
from agent.journal_worker import JournalWorker  # noqa: E402
from agent.readings import Position  # noqa: E402
from agent.uplink import Uplink  # noqa: E402
from backend.config import BackendConfig  # noqa: E402
from backend.pki import generate  # noqa: E402
from backend.service import Backend  # noqa: E402

N = int(os.environ.get("BENCH_E2E_READINGS", 36_000))
T0_MS = 1_790_000_000_000


def readings() -> list[Position]:
    return [Position(T0_MS + i * 100, 53.5 + i * 1e-6, 9.9 + i * 1e-6, 12.0, 42.5, 90.0, 1,
                     3, 9, 0.9) for i in range(N)]


def baseline(tmp: Path) -> float:
    db = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (vehicle_id TEXT, epoch INT, seq INT, time_ms INT, kind TEXT, "
               "lat REAL, lon REAL, alt REAL, speed REAL, course REAL, fix INT, sats INT, "
               "hdop REAL, PRIMARY KEY (vehicle_id, epoch, seq)) WITHOUT ROWID")
    rows = [("bench", 1, i + 1, r.ts_ms, "pos", r.lat, r.lon, r.alt_m, r.speed_kmh,
             r.course_deg, r.fix, r.sats, r.hdop) for i, r in enumerate(readings())]
    t = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.execute("COMMIT")
    return N / (time.perf_counter() - t)


async def end_to_end(tmp: Path) -> tuple[float, float]:
    certs = generate(str(tmp / "pki"), ["localhost", "127.0.0.1"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = Backend(BackendConfig(db=str(tmp / "fleet.db"), quic_host="127.0.0.1",
                                    quic_port=port, http_port=0, cert=certs["cert"],
                                    key=certs["key"]))
    await backend.start()
    token = await backend.store.add_vehicle("bench")
    journal = JournalWorker(str(tmp / "journal.sqlite"))
    batch = readings()
    t = time.perf_counter()
    for i in range(0, N, 500):  # group commits of 500, as the daemon does under load
        await journal.append(batch[i:i + 500])
    journal_rate = N / (time.perf_counter() - t)
    config = AgentConfig("bench", token, ServerConfig("127.0.0.1", port, certs["ca"],
                                                      "localhost"),
                         JournalConfig(str(tmp / "journal.sqlite")))
    uplink = Uplink(config, journal)
    t = time.perf_counter()
    task = asyncio.get_running_loop().create_task(uplink.run())
    while await backend.store.count_readings("bench") < N:
        await asyncio.sleep(0.05)
        if time.perf_counter() - t > 300:
            raise TimeoutError("drain took over 5 minutes")
    rate = N / (time.perf_counter() - t)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    journal.close()
    await backend.stop()
    return journal_rate, rate


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = baseline(tmp)
        journal_rate, e2e = asyncio.run(end_to_end(tmp))
    print(f"{N} readings, one vehicle, loopback QUIC, SQLite store with synchronous=FULL")
    print(f"{'raw sqlite3 executemany (baseline)':<44}{base:>12,.0f} readings/s")
    print(f"{'agent journal append (groups of 500)':<44}{journal_rate:>12,.0f} readings/s")
    print(f"{'end to end: journal→QUIC→gateway→store':<44}{e2e:>12,.0f} readings/s"
          f"   ratio {e2e / base:.3f}")


if __name__ == "__main__":
    main()
