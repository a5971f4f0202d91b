"""Persistence of a gateway node (docs/scaling.md §8): commit itself vs hand batches to a
JetStream work queue, measured in one run against the same durable PostgreSQL.

- direct: each vehicle's batch goes to the gateway's group-commit writer (`BatchWriter`); the
  vehicle's ack waits for the PostgreSQL commit (as now).
- jetstream: the gateway publishes the batch to a work-queue stream (file storage) and acks
  the vehicle on JetStream's PubAck; a consumer (another node's job) pulls, commits through
  the same writer and acks the message.

Both: VEHICLES concurrent senders, BATCH readings per batch. Reported: readings/s, the
vehicle's ack latency p50/p99, time until the readings are in PostgreSQL (p99), and CPU
time per reading summed over this process, nats-server and PostgreSQL (CPU time, not wall:
the machine is shared).

    python -m bench.bench_persist [--vehicles 50] [--batches 40] [--batch 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from backend.store import open_store
from backend.store.base import StoredReading
from backend.writer import BatchWriter
from geostream.clock import wall_ms
from loadtest.store import PG_DURABLE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pgfixture import PgServer  # noqa: E402

SUBJECT = "fleet.persist"
PULL = 200  # messages per fetch: several vehicles' batches per commit, like the writer's group


def _cpu_s(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / tick
    return total


def _pg_pids(pg: PgServer) -> list[int]:
    root = int((pg.data / "postmaster.pid").read_text().split()[0])
    kids = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    return [root, *map(int, kids)]


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] * 1000


def _batch(vehicle: int, b: int, n: int) -> list[StoredReading]:
    now = wall_ms()
    return [StoredReading(vehicle_id=f"bp{vehicle:04d}", epoch=1, seq=b * n + i + 1,
                          time_ms=now - 1000 + i, kind="pos", lat=53.5 + vehicle * 1e-4,
                          lon=10.0 + i * 1e-5, speed_kmh=42.0, course_deg=90.0, fix=1, sats=9,
                          hdop=0.9, received_ms=now) for i in range(n)]


async def _direct(writer: BatchWriter, args) -> tuple[list[float], list[float]]:
    acks: list[float] = []

    async def vehicle(v: int) -> None:
        for b in range(args.batches):
            t0 = time.perf_counter()
            await writer.submit(_batch(v, b, args.batch), [])
            acks.append(time.perf_counter() - t0)

    await asyncio.gather(*(vehicle(v) for v in range(args.vehicles)))
    return acks, acks  # acknowledged = stored


async def _jetstream(writer: BatchWriter, url: str, args) -> tuple[list[float], list[float]]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PERSIST", subjects=[SUBJECT],
                                     retention=RetentionPolicy.WORK_QUEUE,
                                     storage=StorageType.FILE))
    acks: list[float] = []
    stored: list[float] = []
    total = args.vehicles * args.batches
    sub = await js.pull_subscribe(SUBJECT, durable="writer")

    async def consumer() -> None:
        done = 0
        while done < total:
            try:
                msgs = await sub.fetch(PULL, timeout=1)
            except nats.errors.TimeoutError:
                continue
            batches = [json.loads(m.data) for m in msgs]
            readings = [StoredReading(**r) for b in batches for r in b["r"]]
            await writer.submit(readings, [])
            for m in msgs:
                await m.ack()
            now = time.time()
            stored.extend(now - b["t"] for b in batches)
            done += len(msgs)

    async def vehicle(v: int) -> None:
        for b in range(args.batches):
            t0 = time.perf_counter()
            body = {"t": time.time(), "r": [asdict(r) for r in _batch(v, b, args.batch)]}
            await js.publish(SUBJECT, json.dumps(body, separators=(",", ":")).encode())
            acks.append(time.perf_counter() - t0)

    c = asyncio.get_running_loop().create_task(consumer())
    await asyncio.gather(*(vehicle(v) for v in range(args.vehicles)))
    await asyncio.wait_for(c, 120)
    await nc.close()
    return acks, stored


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _one(mode: str, args) -> dict:
    pg = PgServer(dict(PG_DURABLE)).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-persist-"))
    port = _free_port()
    ns = subprocess.Popen([shutil.which("nats-server"), "-js", "-sd", str(tmp), "-a",
                           "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        store = open_store(pg.create_database("bench"))
        await store.open()
        writer = BatchWriter(store)
        writer.start()
        for _ in range(100):  # nats-server starts within a second or two
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        await _direct(writer, argparse.Namespace(vehicles=4, batches=2, batch=args.batch))
        pids = [os.getpid(), ns.pid, *_pg_pids(pg)]
        cpu0, t0 = _cpu_s(pids), time.perf_counter()
        if mode == "direct":
            acks, stored = await _direct(writer, args)
        else:
            acks, stored = await _jetstream(writer, f"nats://127.0.0.1:{port}", args)
        wall = time.perf_counter() - t0
        cpu = _cpu_s(pids) - cpu0
        n = args.vehicles * args.batches * args.batch
        count = await store.count_readings()
        await writer.stop(30)
        await store.close()
        assert count == n + 4 * 2 * args.batch, (count, n)
        return {"mode": mode, "readings_per_s": n / wall, "ack_p50_ms": _pct(acks, 50),
                "ack_p99_ms": _pct(acks, 99), "stored_p99_ms": _pct(stored, 99),
                "cpu_us_per_reading": cpu / n * 1e6}
    finally:
        ns.kill()
        ns.wait(5)
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vehicles", type=int, default=50)
    p.add_argument("--batches", type=int, default=40, help="per vehicle")
    p.add_argument("--batch", type=int, default=10, help="readings per batch")
    args = p.parse_args(argv)
    rows = [asyncio.run(_one(m, args)) for m in ("direct", "jetstream")]
    print(f"{args.vehicles} vehicles × {args.batches} batches × {args.batch} readings, "
          f"durable PostgreSQL (fsync on), load average {os.getloadavg()[0]:.1f}")
    print("| mode | readings/s | vehicle ack p50 | ack p99 | stored p99 | CPU per reading |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['mode']} | {r['readings_per_s']:,.0f} | {r['ack_p50_ms']:.1f} ms | "
              f"{r['ack_p99_ms']:.1f} ms | {r['stored_p99_ms']:.1f} ms | "
              f"{r['cpu_us_per_reading']:.0f} µs |")
    d, j = rows
    cpu = j["cpu_us_per_reading"] / d["cpu_us_per_reading"]
    print(f"jetstream/direct: CPU per reading {cpu:.2f}×, "
          f"stored p99 {j['stored_p99_ms'] / d['stored_p99_ms']:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
