"""Journal benchmark: group-commit throughput vs raw sqlite3, fsyncs/s at defaults, bytes/reading.

    .venv/bin/python bench/bench_journal.py            # about 20-40 s, prints a table

1. accepted readings/s: Journal.append in group commits of `commit_max_readings` (default 2000,
   each one transaction with synchronous=FULL), vs raw sqlite3 `executemany` of the same rows
   (already CBOR-encoded with cbor2: the same bytes the journal's hand encoder writes) in one
   transaction into the same schema, same run, same directory;
2. fsyncs/s at the default settings (200 ms / 2000 readings) for a 10 Hz GPS + 100 Hz CAN
   vehicle, counted with strace when it is installed (else the commit count, one WAL fsync
   per commit);
3. journal bytes per reading (database file after a checkpoint, divided by readings);
4. the uplink's cost per reading to turn journal rows into a batch on the wire (a session with
   the welcome's preset dictionary, batches of LIVE_BATCH readings): written around the stored
   payloads (`encoded_rows`, what the agent does) against decoding them into reading maps and
   encoding those again (`wire_rows`, what it did before), the same rows, same run.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cbor2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import JournalConfig  # noqa: E402
from agent.journal import Journal  # noqa: E402
from agent.journal_drain import encoded_rows, wire_rows  # noqa: E402
from agent.journal_file import _SCHEMA  # noqa: E402
from agent.readings import Position, Signals  # noqa: E402
from geostream.codec import encode as encode_message  # noqa: E402
from geostream.messages import Welcome  # noqa: E402
from geostream.session import ClientSession  # noqa: E402
from geostream.zdict import DICTIONARIES  # noqa: E402

N = 200_000
T0 = 1_750_000_000_000
PROBE_SECONDS = 10.0
GPS_HZ, CAN_HZ = 10, 100
# readings in one live batch: a second of 10 Hz GPS and the CAN snapshots recorded with it
LIVE_BATCH = 15
BATCH_ROUNDS = 5  # passes over the rows for each way, alternating (the best of each counts)


def readings(n: int) -> list:
    out = []
    for i in range(n):
        ts = T0 + i * 10
        if i % 11 == 0:
            out.append(Position(ts_ms=ts, lat=59.3 + i * 1e-6, lon=18.0, speed_kmh=52.5,
                                course_deg=181.0, sats=9, hdop=0.9))
        else:
            out.append(Signals(ts_ms=ts, bus="can0", values={"rpm": 1500 + i % 700,
                                                               "speed": 52}))
    return out


def bench_journal(path: str, data: list, group: int) -> float:
    j = Journal(path, max_mb=0)
    t = time.perf_counter()
    for i in range(0, len(data), group):
        j.append(data[i:i + group])
    elapsed = time.perf_counter() - t
    j.close()
    return elapsed


def bench_batches(path: str) -> tuple[float, float]:
    """Seconds per reading to frame the journal's rows as batches in a session: around the
    stored payloads, and through reading maps (the best of BATCH_ROUNDS passes each)."""
    db = sqlite3.connect(path)
    rows = db.execute("SELECT seq, payload FROM readings ORDER BY seq LIMIT 30000").fetchall()
    db.close()
    chunks = [rows[i:i + LIVE_BATCH] for i in range(0, len(rows), LIVE_BATCH)]
    welcome = encode_message(Welcome(credit=500, max_batch_bytes=65536, time=1,
                             zdict=max(DICTIONARIES)))
    best = {"encoded": float("inf"), "maps": float("inf")}
    for _ in range(BATCH_ROUNDS):
        for way, make in (("encoded", encoded_rows), ("maps", wire_rows)):
            session = ClientSession("bench", "t", 1)
            session.receive(welcome)
            session.data_to_send()
            t = time.perf_counter()
            for chunk in chunks:
                session.send_batch(make(chunk))
                session.data_to_send()
            best[way] = min(best[way], (time.perf_counter() - t) / len(rows))
    return best["encoded"], best["maps"]


def bench_raw(path: str, data: list, encode: bool) -> float:
    rows = None
    if not encode:
        rows = [(i + 1, w["ts"], w["k"], cbor2.dumps(w))
                for i, w in enumerate(r.to_wire() for r in data)]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    t = time.perf_counter()
    if encode:
        rows = [(i + 1, w["ts"], w["k"], cbor2.dumps(w))
                for i, w in enumerate(r.to_wire() for r in data)]
    db.execute("BEGIN")
    db.executemany("INSERT INTO readings VALUES (?,?,?,?)", rows)
    db.execute("COMMIT")
    elapsed = time.perf_counter() - t
    db.close()
    return elapsed


def probe(path: str) -> None:
    """The daemon's group commit at default settings for PROBE_SECONDS (run under strace)."""
    cfg = JournalConfig(path=path)
    j = Journal(path, max_mb=0)
    interval = cfg.commit_interval_ms / 1000
    start = time.monotonic()
    produced = 0
    pending: list = []
    commits = 0
    next_commit = start + interval
    while (now := time.monotonic()) - start < PROBE_SECONDS:
        due = int((now - start) * (GPS_HZ + CAN_HZ))
        while produced < due:
            ts = T0 + produced * 9
            pending.append(Position(ts_ms=ts, lat=59.3, lon=18.0) if produced % 11 == 0
                           else Signals(ts_ms=ts, bus="can0", values={"rpm": 1500}))
            produced += 1
        if now >= next_commit or len(pending) >= cfg.commit_max_readings:
            if pending:
                j.append(pending)
                commits += 1
                pending = []
            next_commit += interval
        time.sleep(0.005)
    j.close()
    print(f"COMMITS {commits} {produced}")


def fsyncs_per_second(tmp: str) -> tuple[float, float, str]:
    path = os.path.join(tmp, "probe.sqlite")
    cmd = [sys.executable, __file__, "--probe", path]
    strace = shutil.which("strace")
    if strace:
        out = os.path.join(tmp, "strace.txt")
        res = subprocess.run([strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", out,
                              *cmd], capture_output=True, text=True, timeout=120)
        counted = 0
        for line in open(out):
            parts = line.split()
            if parts and parts[-1] in ("fsync", "fdatasync"):
                counted += int(parts[3])
        how = "strace"
    else:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        counted = None
        how = "commit count"
    commits = int(res.stdout.split("COMMITS")[1].split()[0])
    if counted is None:
        counted = commits
    return counted / PROBE_SECONDS, commits / PROBE_SECONDS, how


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        probe(sys.argv[2])
        return
    data = readings(N)
    results = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        group = JournalConfig.commit_max_readings
        t_j = bench_journal(os.path.join(tmp, "j.sqlite"), data, group)
        size = os.path.getsize(os.path.join(tmp, "j.sqlite"))
        t_enc, t_maps = bench_batches(os.path.join(tmp, "j.sqlite"))
        t_raw = bench_raw(os.path.join(tmp, "raw.sqlite"), data, encode=False)
        t_raw_enc = bench_raw(os.path.join(tmp, "raw2.sqlite"), data, encode=True)
        fsyncs, commits, how = fsyncs_per_second(tmp)
    results = [
        (f"journal group commit ({group}/txn, FULL)", f"{N / t_j:,.0f} readings/s",
         f"{N // group} commits"),
        ("raw executemany, 1 txn, pre-encoded rows", f"{N / t_raw:,.0f} readings/s", ""),
        ("raw executemany, 1 txn, + CBOR encoding", f"{N / t_raw_enc:,.0f} readings/s", ""),
        ("journal / raw (pre-encoded)", f"{t_raw / t_j:.2f}x", "goal >= 0.5x"),
        ("journal / raw (+ encoding)", f"{t_raw_enc / t_j:.2f}x", ""),
        (f"fsyncs/s at defaults, {GPS_HZ + CAN_HZ} readings/s", f"{fsyncs:.1f}",
         f"{commits:.1f} commits/s, by {how}"),
        ("journal bytes per reading", f"{size / N:.1f} B", f"{N:,} readings, file {size:,} B"),
        (f"batch on the wire, around the payloads ({LIVE_BATCH}/batch)",
         f"{t_enc * 1e6:.2f} µs/reading", f"{t_enc / t_maps:.2f}x the maps' cost"),
        ("batch on the wire, through reading maps (before)", f"{t_maps * 1e6:.2f} µs/reading",
         "decode + encode again"),
    ]
    w = max(len(r[0]) for r in results)
    print(f"{'measure':<{w}}  {'value':>22}  note")
    for name, value, note in results:
        print(f"{name:<{w}}  {value:>22}  {note}")


if __name__ == "__main__":
    main()
