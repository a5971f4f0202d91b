"""The gateway's application path per 1 Hz reading, without sockets or event loop (issue 29).

    .venv/bin/python bench/bench_app_path.py [--vehicles 1000] [--seconds 5] [--rounds 5]
        [--profile]

`--vehicles` sessions (each after its hello and welcome, the preset dictionary agreed as the
agent's are) receive `--seconds` one-reading batches each, made by the load tester's vehicles
(positions with every quantity, every 4th reading a CAN snapshot of 8 signals) and framed by
the agent's `ClientSession`. Per second of the fleet, the gateway's work from the stream bytes
to the ack and the live feed, with the same functions the gateway runs:
- in: each vehicle's frame through `ServerSession.receive` (framing, DEFLATE against the
  dictionary, strict CBOR, the session's checks) and `backend.gateway_rows.validate_batch`
  (every field of every reading, the stored rows);
- ack: `ServerSession.committed` and `data_to_send` (the ack's bytes) per vehicle;
- hub: the tick's newest positions to a `Hub` (`backend.gateway_ingest.publish_positions`).
The baseline in the same run: the libraries' floor for the same frames, `zlib` inflating
each frame's readings against the dictionary and `cbor2.loads` (no checks) of the frame and
of the readings. The process's garbage collector runs as the gateway's does
(`backend.gc_policy.after_start` once the fleet is built: without it, the youngest
generation's collections every 700 allocations made 0.3-0.4 of the path's ratio to the floor,
which the gateway does not pay). Rounds are interleaved (floor, ours, floor, …) and the best
of each is printed, in µs of the thread's CPU time per reading, so a busy machine slows both
alike; the ratio is the figure.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cbor2  # noqa: E402

from backend import gc_policy  # noqa: E402
from backend.hub import Hub  # noqa: E402

try:
    from backend.gateway_ingest import publish_positions
    from backend.gateway_rows import validate_batch
except ImportError:  # a tree before them (A/B against the session's start): the same work
    from backend.hub import position_feature
    from backend.store.base import newest_positions

    def publish_positions(hub, rows):
        for newest in newest_positions(rows).values():
            hub.position(newest.vehicle_id, newest.time_ms, position_feature(
                newest.vehicle_id, newest.time_ms, newest.lat, newest.lon, newest.speed_kmh,
                newest.course_deg, newest.seq))

    from types import SimpleNamespace

    from backend.gateway_conn import GatewayProtocol

    _gw = SimpleNamespace(ts_window=None, driver_actions=None, stats=None)
    _me = SimpleNamespace(gateway=_gw, vehicle_id=None, session=None)

    def validate_batch(batch, vehicle, now_ms, window, images, invalid):
        _gw.ts_window, _gw.stats, _me.vehicle_id = window, SimpleNamespace(invalid=invalid), vehicle
        return GatewayProtocol._validate(_me, batch, now_ms)
from geostream.deflate import WINDOW_BITS  # noqa: E402
from geostream.schema import DEFAULT_WINDOW  # noqa: E402
from geostream.session import BatchReceived, ClientSession, ServerSession  # noqa: E402
from geostream.zdict import DICTIONARIES  # noqa: E402
from loadtest.fleet import SimVehicle  # noqa: E402

NOW_MS = 1_765_000_000_000
CREDIT = 64


def _fleet(vehicles: int, seconds: int) -> tuple[list[ServerSession], list[list[bytes]], int]:
    """Each vehicle's server session after the welcome, and its frames, second by second."""
    sessions, frames = [], []
    zdict = None
    for i in range(vehicles):
        vid = f"bench-{i:05d}"
        client = ClientSession(vid, "token", epoch=1)
        server = ServerSession(credit=CREDIT)
        server.receive(client.data_to_send())
        server.accept(NOW_MS, credit=CREDIT)
        client.receive(server.data_to_send())
        zdict = server._decoder.zdict
        sim = SimVehicle(vid, "token", 1, 1.0, 0.0, NOW_MS - 60_000, seed=i)
        mine = []
        for q in range(1, seconds + 1):
            client.send_batch([sim.wire_reading(q)])
            mine.append(client.data_to_send())
        sessions.append(server)
        frames.append(mine)
    assert zdict is not None, "the sessions agreed a preset dictionary"
    return sessions, frames, zdict


def floor_round(frames: list[list[bytes]], zdict: int, seconds: int) -> float:
    """The libraries' own work for the same frames: cbor2 and zlib, no checks."""
    d = DICTIONARIES[zdict]
    loads, decompressobj, bits = cbor2.loads, zlib.decompressobj, -WINDOW_BITS
    n = 0
    t0 = time.thread_time()
    for s in range(seconds):
        for mine in frames:
            m = loads(mine[s][4:])
            readings = loads(decompressobj(bits, zdict=d).decompress(m["zd"]))
            n += len(readings)
    return (time.thread_time() - t0) / n


def ours_round(sessions: list[ServerSession], frames: list[list[bytes]], seconds: int,
               offset: int, stages: dict[str, float]) -> float:
    """The gateway's path for every vehicle's frame of each second; `offset` shifts the
    gateway's clock so every round's readings lie in its time window. Returns s per reading."""
    hub = Hub()
    n = 0
    total = 0.0
    clock = time.thread_time  # CPU time: a busy machine preempts, it does not bill
    for s in range(seconds):
        now = NOW_MS + offset + s * 1000
        committed = []
        t0 = clock()
        for server, mine in zip(sessions, frames, strict=True):
            for ev in server.receive(mine[s]):
                assert type(ev) is BatchReceived, ev
                good, dead, _ = validate_batch(ev.batch, server.hello.vehicle, now,
                                               DEFAULT_WINDOW, False, _never)
                committed.append((server, ev.batch, good))
        t1 = clock()
        rows = []
        for server, batch, good in committed:
            server.committed([r["q"] for r in batch.readings], CREDIT)
            if not server.data_to_send():
                raise AssertionError("no ack")
            rows += good
        t2 = clock()
        publish_positions(hub, rows)
        t3 = clock()
        n += len(rows)
        stages["in"] += t1 - t0
        stages["ack"] += t2 - t1
        stages["hub"] += t3 - t2
        total += t3 - t0
    return total / n


def _never(rule: str) -> None:
    raise AssertionError(f"a valid reading refused ({rule})")


def _rewind(sessions: list[ServerSession]) -> None:
    """Each round receives the same frames again: the sessions forget what they acknowledged
    (the agent's next epoch would send them again the same way)."""
    for server in sessions:
        server.through = 0
        server.pending = 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one more round of ours")
    a = ap.parse_args()
    sessions, frames, zdict = _fleet(a.vehicles, a.seconds)
    gc_policy.after_start()  # as the gateway runs (backend/service.py)
    floors, ours = [], []
    best_stages: dict[str, float] = {}
    for _ in range(a.rounds):
        floors.append(floor_round(frames, zdict, a.seconds))
        _rewind(sessions)
        stages = {"in": 0.0, "ack": 0.0, "hub": 0.0}
        ours.append(ours_round(sessions, frames, a.seconds, 0, stages))
        n = a.vehicles * a.seconds
        per_reading = {k: v / n for k, v in stages.items()}
        if not best_stages or sum(per_reading.values()) < sum(best_stages.values()):
            best_stages = per_reading
    f, o = min(floors), min(ours)
    print(f"{a.vehicles} vehicles × {a.seconds} one-reading batches, best of {a.rounds} "
          "interleaved rounds, µs per reading")
    print(f"  floor: zlib + cbor2.loads, no checks (baseline) {f * 1e6:8.2f}")
    print(f"  gateway application path                        {o * 1e6:8.2f}   "
          f"ratio {o / f:.2f}×")
    for k, v in best_stages.items():
        print(f"    {k:<44}{v * 1e6:8.2f}")
    if a.profile:
        _rewind(sessions)
        prof = cProfile.Profile()
        prof.enable()
        ours_round(sessions, frames, a.seconds, 0, {"in": 0.0, "ack": 0.0, "hub": 0.0})
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
