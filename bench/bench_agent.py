"""The agent's RSS and CPU at nominal load: 10 Hz GPS + 2,000 CAN frames/s (issue 14).

    python bench/bench_agent.py [--seconds 30] [--frames-per-s 2000] [--gps-hz 10]
                                [--can slcan|virtual] [--profile FILE [--gil]]

Real processes on loopback: a backend (`python -m backend`, SQLite store), the GPS simulator
writing NMEA at 10 Hz onto a pty (`hil.gps_sim`), the truck drive cycle of `hil.can_gen`
(played faster than real time to reach the frame rate), and the real agent (`agent.cli.main`)
reading both, journaling and sending. CAN, `--can`:
- `slcan` (default): `hil.can_gen --pty` writes SLCAN lines onto a pty as a USB adapter does and
  the agent reads them with `interface = "slcan"` (agent/can/slcan.py), alone in its process;
- `virtual`: python-can's `virtual` bus, which works inside one process only, so the
  agent runs in a wrapper process (`bench_agent.py _agent`) whose extra thread plays the
  frames; that thread's own CPU time (`time.thread_time`, written to a file) is subtracted
  (it still competes for the agent's GIL).
After a warm-up the agent's CPU time (utime + stime of all its threads, /proc) over the window
and its RSS (VmRSS at the end, VmHWM peak) are reported. Baseline in the same run: the same
agent with the same sources configured but nothing playing (connected, idle), so the ratio is
the price of the load. Also printed: CPU by thread (names from `py-spy dump`), context
switches per second by thread (/proc/PID/task/*/status: a voluntary switch is a wait that
blocked, i.e. a wake-up; their rate depends less on the machine's load than CPU does), the
load average, and the RSS of the agent's imports alone, layer by layer. `--profile FILE
[--gil]`: py-spy of the loaded agent (`python -m loadtest.profile FILE` summarises it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geostream.quic import AGENT_DEFAULT_LIBRARY, LIBRARIES, library_name  # noqa: E402
from hil.can_gen import CYCLE_S, frames  # noqa: E402
from hil.waits import free_port  # noqa: E402

VEHICLE = "bench-agent"
WARMUP_S = 8.0  # connect, open the sources, first journal commits
# Each signal recorded at most at 10 Hz, like the GPS (docs/can.md): what a fleet records.
MIN_INTERVAL_MS = 100
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_kb(pid: int) -> tuple[int, int]:
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0])
    return vals["VmRSS"], vals["VmHWM"]


def thread_cpu_s(pid: int) -> dict[int, float]:
    """utime + stime of each of the process's threads, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = cpu_s_of(task / "stat")
        except OSError:  # the thread ended
            pass
    return out


def thread_switches(pid: int) -> dict[int, tuple[int, int]]:
    """(voluntary, involuntary) context switches of each of the process's threads, by thread id:
    a voluntary switch is a thread going to sleep (a wait that blocked), so their rate is the
    process's wake-ups per second, a figure that depends less on the machine's load than CPU."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            vals = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines()
                        if line.endswith(tuple("0123456789")) and "ctxt_switches" in line)
            out[int(task.name)] = (int(vals["voluntary_ctxt_switches"]),
                                   int(vals["nonvoluntary_ctxt_switches"]))
        except (OSError, KeyError, ValueError):  # the thread ended
            pass
    return out


def cpu_s_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by OS thread id, from `py-spy dump --json` (Python 3.11 does not
    name its OS threads)."""
    try:
        out = subprocess.run([str(Path(sys.executable).with_name("py-spy")), "dump", "--json",
                              "--nonblocking", "--pid", str(pid)], capture_output=True,
                             text=True, timeout=30).stdout
        return {t["os_thread_id"]: t["thread_name"] for t in json.loads(out)}
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return {}


def frames_per_drive_s() -> float:
    return sum(1 for _ in frames(CYCLE_S, 0.0)) / CYCLE_S


class Bench:
    def __init__(self, work: Path, commit_ms: int = 0):
        self.work = work
        self.commit_ms = commit_ms  # [journal] commit_interval_ms; 0: the agent's default
        self.procs: list[subprocess.Popen] = []

    def spawn(self, name: str, *args: str, stdout=None) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        p = subprocess.Popen([sys.executable, *args], stdout=stdout or log, stderr=log,
                             env=env, cwd=REPO)
        self.procs.append(p)
        return p

    async def backend(self) -> None:
        from backend.pki import generate
        from backend.store import open_store

        self.pki = generate(str(self.work / "pki"), ["localhost", "127.0.0.1"])
        db = self.work / "fleet.db"
        store = open_store(f"sqlite://{db}")
        await store.open()
        self.token = await store.add_vehicle(VEHICLE)
        await store.close()
        self.quic_port = free_port()
        p = self.spawn("backend", "-m", "backend", "--db", f"sqlite://{db}",
                       "--cert", self.pki["cert"], "--key", self.pki["key"],
                       "--quic-host", "127.0.0.1", "--quic-port", str(self.quic_port),
                       "--http-port", str(free_port(tcp=True)), stdout=subprocess.PIPE)
        line = await asyncio.to_thread(p.stdout.readline)
        if b"backend ready" not in line:
            raise RuntimeError(f"backend did not start; see {self.work / 'backend.log'}")

    def agent(self, name: str, gps_tty: Path, can_tty: str, virtual: tuple | None = None
              ) -> subprocess.Popen:
        """virtual: (speed, duration) of the in-process generator, else `can_tty` is slcan."""
        cfg = self.work / f"{name}.toml"
        iface = "virtual" if virtual else "slcan"
        cfg.write_text(
            f'[vehicle]\nid = "{VEHICLE}"\ntoken = "{self.token}"\n\n'
            f'[server]\nhost = "127.0.0.1"\nport = {self.quic_port}\n'
            f'ca_file = "{self.pki["ca"]}"\nserver_name = "localhost"\n\n'
            f'[journal]\npath = "{self.work / (name + ".journal.sqlite")}"\n'
            + (f"commit_interval_ms = {self.commit_ms}\n" if self.commit_ms else "") + "\n"
            f'[gps]\ndevice = "{gps_tty}"\nbaud = 115200\n\n'
            f'[[can.bus]]\nname = "truck"\ninterface = "{iface}"\nchannel = "{can_tty}"\n'
            f'bitrate = 500000\ndbc = ["truck_j1939.dbc"]\n'
            f'min_interval_ms = {MIN_INTERVAL_MS}\n\n'
            f'[status]\nsocket = "{self.work / (name + ".sock")}"\n')
        if virtual:
            return self.spawn(name, __file__, "_agent", str(cfg), can_tty, str(virtual[0]),
                              str(virtual[1]), str(self.work / f"{name}.gen-cpu"))
        return self.spawn(name, "-m", "agent", "--config", str(cfg))

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def gen_cpu(path: Path | None) -> float:
    try:
        return float(path.read_text()) if path else 0.0
    except (OSError, ValueError):
        return 0.0


def measure(pid: int, seconds: float, sock: Path, gen: Path | None) -> dict:
    load0 = os.getloadavg()[0]
    s0, c0, g0, t0 = status(sock), cpu_s(pid), gen_cpu(gen), time.monotonic()
    th0, sw0 = thread_cpu_s(pid), thread_switches(pid)
    time.sleep(seconds)
    c1, g1, t1, s1 = cpu_s(pid), gen_cpu(gen), time.monotonic(), status(sock)
    th1, sw1 = thread_cpu_s(pid), thread_switches(pid)
    names = thread_names(pid)
    threads = sorted(((names.get(tid, str(tid)), cpu - th0.get(tid, 0.0))
                      for tid, cpu in th1.items()), key=lambda x: -x[1])
    # the generator thread of --can virtual is not the agent's
    gen_tids = {tid for tid, name in names.items() if name == "can-generator"}
    switches = {names.get(tid, str(tid)): (v - sw0.get(tid, (0, 0))[0],
                                           n - sw0.get(tid, (0, 0))[1])
                for tid, (v, n) in sw1.items() if tid not in gen_tids}
    c1 -= g1 - g0  # the generator thread is not the agent
    rss, hwm = rss_kb(pid)
    frames = s1["frames"] - s0["frames"]
    return {"cpu_pct": (c1 - c0) / (t1 - t0) * 100, "cpu_s": c1 - c0, "wall_s": t1 - t0,
            "frames_per_s": frames / (t1 - t0),
            "fixes_per_s": (s1["fixes"] - s0["fixes"]) / (t1 - t0),
            "acked_per_s": (s1["acked"] - s0["acked"]) / (t1 - t0),
            "rss_mb": rss / 1024, "hwm_mb": hwm / 1024, "threads": threads,
            "switches": switches, "load": (load0, os.getloadavg()[0]),
            "voluntary_per_s": sum(v for v, _ in switches.values()) / (t1 - t0),
            "involuntary_per_s": sum(n for _, n in switches.values()) / (t1 - t0)}


async def run(args) -> None:
    speed = args.frames_per_s / frames_per_drive_s()
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        b = Bench(Path(tmp), args.commit_interval_ms)
        try:
            await b.backend()
            results = {}
            for phase in ("idle", "loaded"):
                play = phase == "loaded"
                total_s = WARMUP_S + args.seconds + 5
                gps_tty = b.work / f"gps-{phase}.tty"
                b.spawn(f"gps-{phase}", "-m", "hil.gps_sim", "--link", str(gps_tty),
                        "--rate", str(args.gps_hz if play else 0.2),
                        "--count", str(int(total_s * (args.gps_hz if play else 0.2))),
                        "--wait-reader")
                duration = (total_s + 60) * speed if play else 1
                virtual = (speed if play else 1.0, duration) if args.can == "virtual" else None
                if virtual:
                    can_tty = f"bench-{phase}"
                else:
                    can = b.spawn(f"can-{phase}", "-m", "hil.can_gen", "--pty",
                                  "--duration", str(duration),
                                  "--speed", str(speed if play else 1.0),
                                  stdout=subprocess.PIPE)
                    can_tty = (await asyncio.to_thread(can.stdout.readline)).decode().strip()
                for _ in range(100):
                    if gps_tty.exists():
                        break
                    await asyncio.sleep(0.1)
                agent = b.agent(f"agent-{phase}", gps_tty, can_tty, virtual)
                await asyncio.sleep(WARMUP_S)
                if agent.poll() is not None:
                    raise RuntimeError(f"agent exited; see {b.work / ('agent-' + phase + '.log')}")
                spy = None
                if args.profile and play:  # collapsed stacks: python -m loadtest.profile
                    spy = subprocess.Popen(
                        [str(Path(sys.executable).with_name("py-spy")), "record", "--format",
                         "raw", "--nonblocking", *(["--gil"] if args.gil else []), "-d",
                         str(int(args.seconds)), "-p", str(agent.pid), "-o", args.profile],
                        stdout=subprocess.DEVNULL)
                results[phase] = await asyncio.to_thread(
                    measure, agent.pid, args.seconds, b.work / f"agent-{phase}.sock",
                    b.work / f"agent-{phase}.gen-cpu" if virtual else None)
                if spy is not None:
                    spy.wait(60)
                agent.terminate()
                agent.wait(15)
            print_table(args, speed, results)
            print("RSS of the imports alone (fresh interpreters, cumulative):")
            for name, kb in import_layers():
                print(f"  {kb / 1024:6.1f} MB  {name}")
        finally:
            b.stop()


def status(sock: Path) -> dict:
    """What the agent says it did (`fleet-agent status --json`): proof the load arrived."""
    from agent.control import query

    st = query(str(sock))
    src = st["sources"]
    return {"acked": st["link"]["readings_acked"], "frames": src["can:truck"].get("frames", 0),
            "fixes": src["gps"].get("fixes", 0)}


def print_table(args, speed: float, r: dict) -> None:
    idle, load = r["idle"], r["loaded"]
    print(f"agent at {args.gps_hz:g} Hz GPS + {args.frames_per_s:,} CAN frames/s ({args.can}) "
          f"(drive cycle × {speed:.1f}), {args.seconds:.0f} s window after {WARMUP_S:.0f} s "
          "warm-up")
    for phase in ("idle", "loaded"):
        x = r[phase]
        print(f"  {phase}: {x['frames_per_s']:,.0f} CAN frames/s and {x['fixes_per_s']:.1f} "
              f"fixes/s reached the agent, {x['acked_per_s']:,.0f} readings/s acked; "
              f"{x['cpu_s']:.2f} s CPU in {x['wall_s']:.1f} s; load average "
              f"{x['load'][0]:.1f} → {x['load'][1]:.1f}")
        print("    by thread: " + ", ".join(
            f"{name} {cpu / x['wall_s'] * 100:.1f} %" for name, cpu in x["threads"] if cpu > 0))
        print(f"    context switches: {x['voluntary_per_s']:,.0f}/s voluntary (wake-ups), "
              f"{x['involuntary_per_s']:,.0f}/s involuntary; voluntary by thread: " + ", ".join(
                  f"{name} {v / x['wall_s']:,.0f}/s" for name, (v, _) in
                  sorted(x["switches"].items(), key=lambda kv: -kv[1][0]) if v))
    per_frame_us = load["cpu_s"] / max(1, load["frames_per_s"] * load["wall_s"]) * 1e6
    print(f"  CPU per CAN frame (GPS included): {per_frame_us:.0f} µs → at "
          f"{args.frames_per_s:,} frames/s: {per_frame_us * args.frames_per_s / 1e4:.1f} % "
          f"of a core (projection; the measured % is bounded by the CPU the machine gave)")
    print("| measure | loaded | baseline: idle agent, same sources | ratio | goal |")
    print("|---|---:|---:|---:|---|")
    print(f"| CPU, % of one core | {load['cpu_pct']:.1f} | {idle['cpu_pct']:.1f} | "
          f"{load['cpu_pct'] / max(0.1, idle['cpu_pct']):.1f}× | ≤ 5 % |")
    print(f"| wake-ups (voluntary context switches) per s | {load['voluntary_per_s']:,.0f} | "
          f"{idle['voluntary_per_s']:,.0f} | "
          f"{load['voluntary_per_s'] / max(1.0, idle['voluntary_per_s']):.1f}× | |")
    print(f"| RSS at the end, MB | {load['rss_mb']:.1f} | {idle['rss_mb']:.1f} | "
          f"{load['rss_mb'] / idle['rss_mb']:.2f}× | ≤ 45 MB |")
    print(f"| peak RSS (VmHWM), MB | {load['hwm_mb']:.1f} | {idle['hwm_mb']:.1f} | "
          f"{load['hwm_mb'] / idle['hwm_mb']:.2f}× | |")


# What the agent's process imports, cumulatively, in the order the agent needs it.
IMPORT_LAYERS = (
    ("bare interpreter", ""),
    ("+ asyncio (pulls ssl and libssl/libcrypto)", "asyncio"),
    ("+ stdlib and small libraries (sqlite3, pyserial, pynmea2, cbor2, tomllib, argparse)",
     "sqlite3, serial, pynmea2, cbor2, tomllib, argparse, json, zlib, logging"),
    ("+ python-can (every log format: can.io) and its slcan interface",
     "can, can.interfaces.slcan"),
    ("+ cantools (all its formats, tester, logreader)", "cantools"),
    ("+ the QUIC client library of the seam (aioquic: cryptography, pyOpenSSL, "
     "service_identity, certifi; qh3: its native module)",
     LIBRARIES[library_name(default=AGENT_DEFAULT_LIBRARY)]),
    ("+ the agent's own modules", "agent.daemon, agent.gps.config, agent.can.config, "
     "agent.can.slcan, agent.quic_link, agent.cli"),
)


def import_layers() -> list[tuple[str, int]]:
    """(layer, VmRSS kB) of a fresh interpreter importing each layer on top of the ones
    before: the memory the agent holds before it opens anything."""
    rows = []
    done: list[str] = []
    for name, mods in IMPORT_LAYERS:
        if mods:
            done.append(mods)
        code = "".join(f"import {m}\n" for m in done) + (
            "print(next(l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('VmRSS')))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=60)
        rows.append((name, int(out.stdout.split()[-1])))
    return rows


def agent_with_virtual_can(cfg: str, channel: str, speed: float, duration: float,
                           cpu_file: str) -> int:
    """The real agent, and a thread playing the drive cycle onto its `virtual` bus."""
    import threading

    import can

    from agent.cli import main as agent_main
    from hil.can_gen import _play

    def play() -> None:
        time.sleep(WARMUP_S / 2)  # the agent opens its bus first
        next_write = [0.0]
        with can.Bus(interface="virtual", channel=channel) as bus:
            def send(msg) -> None:
                bus.send(msg)
                if time.monotonic() >= next_write[0]:
                    next_write[0] = time.monotonic() + 0.5
                    Path(cpu_file).write_text(f"{time.thread_time():.6f}")
            _play(frames(duration, time.time()), send, speed)

    threading.Thread(target=play, name="can-generator", daemon=True).start()
    return agent_main(["--config", cfg])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_agent":
        c, ch, sp, du, cpu = sys.argv[2:7]
        sys.exit(agent_with_virtual_can(c, ch, float(sp), float(du), cpu))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--frames-per-s", type=int, default=2000)
    p.add_argument("--gps-hz", type=float, default=10.0)
    p.add_argument("--profile", metavar="FILE", help="py-spy the loaded agent into FILE")
    p.add_argument("--gil", action="store_true",
                   help="with --profile: only samples holding the GIL (py-spy --gil)")
    p.add_argument("--commit-interval-ms", type=int, default=0,
                   help="the agent's [journal] commit_interval_ms (default: its own, 200)")
    p.add_argument("--can", choices=("virtual", "slcan"), default="slcan",
                   help="slcan (default): frames over a pty from another process, as from a "
                        "USB adapter; virtual: python-can's in-process bus")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
