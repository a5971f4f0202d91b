"""CAN decode benchmark: the agent's whole CAN path vs cantools alone, on the same frames.

    python bench/bench_can.py [--frames N]

Frames are a truck drive cycle from hil/can_gen.py (J1939, agent/dbc/truck_j1939.dbc).
Rows:
  cantools decode_message     db.decode_message(id, data) per frame (the reference)
  source path (all selected)  CanPipeline.feed: id lookup → length check → decode → range
                              check → selection → Signals; every signal of every message
  source path (5 signals)     the same with a typical selection (rules, deadband, snapshots)
  source path (all, min_interval 100 ms)  every signal at most every 100 ms (bench_agent's
                              selection): frames inside the interval are held, not decoded;
                              the row after it decodes every frame (CanDecoder.hold disabled)
  J1939 other SA / priority   frames whose ids differ from the DBC's (PGN match, cached)
  unselected frame            a frame of a message nobody selected: cost per frame
  virtual send+recv only      python-can's virtual bus alone (no decoding), for scale
  virtual bus end to end      CanBusSource on a python-can virtual bus (reader thread,
                              batching to asyncio, decode, select); sender in this process,
                              so sender, reader thread and loop share one GIL
  slcan over a pty            receiving alone (`recv()`), python-can's slcanBus against
                              agent.can.slcan.SlcanBus, frames written by `hil/can_gen.py
                              --pty` in another process, paced at 2,000 frames/s and flat out;
                              CPU time of this process per frame, not wall time
Bounded: a few seconds in total.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import can  # noqa: E402

from agent.can.dbcload import BUILTIN_DIR, load_dbc  # noqa: E402
from agent.can.decoder import CanDecoder  # noqa: E402
from agent.can.select import DEFAULT_RULE, Rule, Selector  # noqa: E402
from agent.can.source import CanBusSource, CanPipeline  # noqa: E402
from hil.can_gen import frames as drive_frames  # noqa: E402

SELECTION = {
    "EEC1": {"EngSpeed": "EngSpeed"},
    "CCVS1": {"WheelBasedVehicleSpeed": "WheelBasedVehicleSpeed"},
    "LFE1": {"EngFuelRate": "EngFuelRate"},
    "ET1": {"EngCoolantTemp": "EngCoolantTemp"},
    "DD1": {"FuelLevel1": "FuelLevel1"},
}
RULES = {"EngSpeed": Rule(min_interval_ms=100, deadband=10),
         "WheelBasedVehicleSpeed": Rule(min_interval_ms=200, deadband=0.5)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slcan", type=int, default=4000, metavar="N",
                        help="frames per slcan-over-pty row (0: skip those rows)")
    args = parser.parse_args(argv)
    db = load_dbc(BUILTIN_DIR / "truck_j1939.dbc")
    frames = []
    for msg in drive_frames(3600):
        frames.append(msg)
        if len(frames) >= args.frames:
            break
    n = len(frames)
    stamped = [(round(m.timestamp * 1000), m) for m in frames]
    rows = []

    def cantools_alone():
        decode = db.decode_message
        for m in frames:
            decode(m.arbitration_id, m.data)

    def pipeline_run(selection, rules=None, snapshot_hz=0.0, data=stamped, default=DEFAULT_RULE,
                     hold=True):
        def run():
            pipe = CanPipeline("b", CanDecoder([db], selection),
                               Selector(rules, default, snapshot_hz=snapshot_hz))
            if not hold:  # the baseline: decode every frame, let the selector drop values
                pipe.decoder.hold = lambda *args: None
            sink = collections.deque(maxlen=1).append  # emit, keeping nothing
            feed = pipe.feed
            for ts, m in data:
                feed(m, ts, sink)
        return run

    shifted = [(ts, can.Message(arbitration_id=(m.arbitration_id & ~0xFF) | 0x3D,
                                is_extended_id=True, data=m.data)) for ts, m in stamped]
    # unselected: a selection of ET1 only; every EEC1/CCVS1/... frame is skipped
    unselected = [(ts, m) for ts, m in stamped if m.arbitration_id != 0x18FEEE00]
    cases = [
        ("cantools decode_message", n, cantools_alone),
        ("source path (all selected)", n, pipeline_run(None)),
        ("source path (5 signals)", n, pipeline_run(SELECTION, RULES, 1.0)),
        ("source path (all, min_interval 100 ms)", n,
         pipeline_run(None, default=Rule(min_interval_ms=100))),
        ("  the same, every frame decoded (no hold)", n,
         pipeline_run(None, default=Rule(min_interval_ms=100), hold=False)),
        ("J1939 other SA (all selected)", n, pipeline_run(None, data=shifted)),
        ("unselected frame", len(unselected),
         pipeline_run({"ET1": {"EngCoolantTemp": "c"}}, data=unselected)),
    ]
    # round robin, best of each: a busy shared machine slows all cases alike
    best = [float("inf")] * len(cases)
    for _ in range(args.runs):
        for i, (_, _, fn) in enumerate(cases):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    for (name, count, _), t in zip(cases, best, strict=True):
        rows.append((name, count / t, t / count * 1e9))

    bus_n = min(n, 5000)
    with can.Bus(interface="virtual", channel="bench-raw") as tx, \
            can.Bus(interface="virtual", channel="bench-raw") as rx:
        t0 = time.perf_counter()
        for m in frames[:bus_n]:
            tx.send(m)
            rx.recv(0)
        t_raw = time.perf_counter() - t0
    rows.append(("python-can virtual send+recv only", bus_n / t_raw, t_raw / bus_n * 1e9))
    t_bus, got = asyncio.run(virtual_bus(frames[:bus_n]))
    rows.append((f"virtual bus end to end ({got}/{bus_n})", got / t_bus, t_bus / got * 1e9))

    if args.slcan:
        rows += slcan_rows(args.slcan)

    print(f"{n} frames, best of {args.runs}; python {sys.version.split()[0]}, "
          f"cantools {__import__('cantools').__version__}, python-can {can.__version__}")
    print(f"{'path':48} {'frames/s':>12} {'ns/frame':>10} {'vs cantools':>12}")
    for name, fps, ns in rows:
        print(f"{name:48} {fps:12,.0f} {ns:10,.0f} {fps / rows[0][1]:11.2f}x")
    return 0


async def virtual_bus(frames) -> tuple[float, int]:
    db = load_dbc(BUILTIN_DIR / "truck_j1939.dbc")
    pipe = CanPipeline("b", CanDecoder([db]), Selector())
    src = CanBusSource("can:b", pipe, "virtual", "bench-can")
    task = asyncio.create_task(src.run(lambda r: None))
    try:
        async with asyncio.timeout(10):
            while src.state != "up":
                await asyncio.sleep(0.01)
        with can.Bus(interface="virtual", channel="bench-can") as tx:
            t0 = time.perf_counter()
            for m in frames:
                tx.send(m)
            deadline = time.monotonic() + 20
            while pipe.decoder.counts["frames"] < len(frames) and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            return time.perf_counter() - t0, pipe.decoder.counts["frames"]
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


def slcan_rows(n: int) -> list[tuple[str, float, float]]:
    """(name, frames per CPU second, CPU ns per frame) of receiving n frames over a pty."""
    from can.interfaces.slcan import slcanBus

    from agent.can.slcan import SlcanBus

    per_drive_s = sum(1 for _ in drive_frames(60)) / 60
    rows = []
    for pace, speed in (("2,000/s", 2000 / per_drive_s), ("flat out", 0)):
        for name, cls in (("python-can slcanBus", slcanBus), ("agent SlcanBus", SlcanBus)):
            got, cpu = _slcan_receive(cls, n, n / per_drive_s, speed)
            rows.append((f"slcan pty {pace}: {name} ({got}/{n})", got / cpu, cpu / got * 1e9))
    return rows


def _slcan_receive(cls, n: int, drive_s: float, speed: float) -> tuple[int, float]:
    import subprocess

    gen = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent.parent / "hil" / "can_gen.py"),
         "--pty", "--duration", f"{drive_s:.3f}", "--speed", str(speed), "--open-timeout", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        bus = cls(gen.stdout.readline().strip(), bitrate=500000, sleep_after_open=0)
        try:
            got = 0
            t0 = None
            deadline = time.monotonic() + drive_s / max(speed, 1) + 60
            while got < n and time.monotonic() < deadline:
                try:
                    msg = bus.recv(0.5)
                except can.CanError:  # the generator ended: its pty is gone
                    break
                if msg is not None:
                    if t0 is None:
                        t0 = time.process_time()
                    got += 1
                elif gen.poll() is not None:
                    break
            return got, time.process_time() - (t0 or 0)
        finally:
            try:
                bus.shutdown()
            except can.CanError:  # the generator ended and its pty went away first
                pass
    finally:
        gen.kill()
        gen.wait(5)


if __name__ == "__main__":
    sys.exit(main())
