"""The real gateway's CPU per stored reading, measured as a whole process below its knee.

    .venv/bin/python bench/bench_gateway_process.py [--vehicles 1000] [--rounds 3]
        [--rate 1] [--warmup 4] [--window 10] [--baseline DIR] [--profile DIR]

A round is one load test (loadtest/run.py): a `python -m backend` process (its real UDP edge
on 127.0.0.1, SQLite store) and the load tester's client processes, which drive it from
outside at 1 Hz per vehicle (`--rate`). After the connections are up and `--warmup` seconds
of readings (every vehicle's first batch, first alert evaluation, the learned layouts), the
gateway process's CPU is read from /proc per thread (the event loop's thread is the
process's main thread) together with the readings its store holds; again `--window` seconds
later. Printed per run: CPU per stored reading (µs; user, system; the loop's thread and the
others), the share of a core, voluntary context switches per reading (the loop's wakeups: a
switch is a sleep in epoll or on the GIL), and the load test's own figures (acked/s, ack
p99, datagrams per acked reading, handshakes over the whole run (connects, reconnects and the
clients' liveness probes, which are connections of their own: below ~0.2 Hz they dominate),
lost, duplicated, the yardstick).

With `--baseline DIR` (another checkout, e.g. a worktree of main), each round runs both
gateways in turn, the order alternating; the clients are this tree's in both. The ratio
this/baseline per round and its min–max are printed: on a shared machine only these count.
Exit status 1 if a run lost or duplicated a reading.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.run import Options, _children, run  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: str) -> list[str]:
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def _switches(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


class Probe:
    """Snapshots of the one gateway process this bench started: per-thread CPU and
    voluntary context switches from /proc, and the readings its SQLite store holds."""

    def __init__(self, profile: str = "", window_s: float = 0.0) -> None:
        self.snaps: list[dict] = []
        self.profile, self.window_s = profile, window_s

    @staticmethod
    def _gateway() -> tuple[int, str]:
        for pid in _children(os.getpid()):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"backend" in argv and b"--db" in argv:
                return pid, argv[argv.index(b"--db") + 1].decode().removeprefix("sqlite://")
        raise RuntimeError("no gateway process among this process's children")

    def snap(self) -> None:
        pid, db = self._gateway()
        t0 = time.monotonic()
        threads = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                f = _stat(f"{task}/stat")
                threads[int(task.name)] = (int(f[11]) / TICK, int(f[12]) / TICK,
                                           _switches(f"{task}/status"))
            except OSError:  # a thread that ended meanwhile
                continue
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            stored = conn.execute("SELECT count(*) FROM vehicle_telemetry").fetchone()[0]
        self.snaps.append({"pid": pid, "threads": threads, "stored": stored,
                           "at": (t0 + time.monotonic()) / 2})
        if self.profile and len(self.snaps) == 1:  # py-spy over the window, every thread
            spy = Path(sys.executable).with_name("py-spy")
            subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration",
                              str(max(1, int(self.window_s))), "--format", "raw", "--rate",
                              "100", "--nonblocking", "--threads", "-o", self.profile],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def figures(self) -> dict[str, float]:
        a, b = self.snaps
        pid = a["pid"]
        n = max(1, b["stored"] - a["stored"])

        def delta(tids, k):
            return sum(b["threads"][t][k] - a["threads"].get(t, (0, 0, 0))[k] for t in tids)

        every = list(b["threads"])
        others = [t for t in every if t != pid]
        us = 1e6 / n
        return {
            "readings_per_s": n / (b["at"] - a["at"]),
            "core_pct": (delta(every, 0) + delta(every, 1)) / (b["at"] - a["at"]) * 100,
            "cpu_us": (delta(every, 0) + delta(every, 1)) * us,
            "user_us": delta(every, 0) * us,
            "sys_us": delta(every, 1) * us,
            "loop_us": (delta([pid], 0) + delta([pid], 1)) * us,
            "others_us": (delta(others, 0) + delta(others, 1)) * us,
            "loop_switches": delta([pid], 2) / n,
            "other_switches": delta(others, 2) / n,
            "threads": len(every),
        }


def one_run(tree: str, opts: argparse.Namespace, seed: int, profile: str = "") -> dict:
    probe = Probe(profile, opts.window)
    rep = run(Options(vehicles=opts.vehicles, rate_hz=opts.rate,
                      duration_s=opts.warmup + opts.window, db="sqlite", seed=seed,
                      drain_timeout_s=30.0, gateway_tree=tree),
              events=[(opts.warmup, probe.snap), (opts.warmup + opts.window, probe.snap)])
    return {**probe.figures(), "acked_per_s": rep.acked_per_s, "p99_ms": rep.ack_p99_ms,
            "lost": rep.lost, "duplicated": rep.duplicated, "ok": rep.ok,
            "yardstick_ms": rep.yardstick_ms, "load": rep.load_1m,
            "report_ms": rep.gateway_cpu_ms_per_reading,
            "handshakes": rep.handshakes, "dg_in": rep.datagrams_in_per_reading,
            "dg_out": rep.datagrams_out_per_reading,
            "kinds": rep.datagram_kinds}


def line(name: str, f: dict) -> str:
    return (f"{name:9s} {f['cpu_us']:6.1f} µs/reading (user {f['user_us']:5.1f}, sys "
            f"{f['sys_us']:5.1f}; loop {f['loop_us']:5.1f}, other threads {f['others_us']:5.1f}) "
            f"switches/reading loop {f['loop_switches']:.2f} other {f['other_switches']:.2f}; "
            f"{f['readings_per_s']:.0f} stored/s, {f['core_pct']:.1f} % of a core, "
            f"acked {f['acked_per_s']:.0f}/s, "
            f"p99 {f['p99_ms']:.0f} ms, datagrams/reading in {f['dg_in']:.2f} out "
            f"{f['dg_out']:.2f}, handshakes {f['handshakes']}, "
            f"lost {f['lost']} dup {f['duplicated']}, "
            f"yardstick {f['yardstick_ms']:.1f} ms, load {f['load']:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1.0, help="readings/s per vehicle")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds of readings before")
    ap.add_argument("--window", type=float, default=10.0, help="measured seconds")
    ap.add_argument("--baseline", help="another checkout whose gateway runs in turn")
    ap.add_argument("--profile", metavar="DIR", help="py-spy each run's gateway over its "
                    "window into DIR (collapsed stacks; `python -m loadtest.profile FILE`)")
    opts = ap.parse_args()
    this = str(Path(__file__).resolve().parents[1])
    trees = {"this": this, **({"baseline": str(Path(opts.baseline).resolve())}
                              if opts.baseline else {})}
    if opts.profile:
        os.makedirs(opts.profile, exist_ok=True)
    ratios: dict[str, list[float]] = {}
    ok = True
    for r in range(opts.rounds):
        order = list(trees) if r % 2 == 0 else list(trees)[::-1]
        got = {}
        for name in order:
            spy = f"{opts.profile}/{name}-{r + 1}.py-spy.txt" if opts.profile else ""
            got[name] = one_run(trees[name], opts, seed=r + 1, profile=spy)
            ok &= got[name]["ok"]
            print(f"round {r + 1} {line(name, got[name])}", flush=True)
        if "baseline" in got:
            for k in ("cpu_us", "loop_us", "others_us", "loop_switches"):
                ratios.setdefault(k, []).append(got["this"][k] / max(1e-9, got["baseline"][k]))
            print(f"round {r + 1} this/baseline: "
                  + ", ".join(f"{k} {v[-1]:.3f}" for k, v in ratios.items()), flush=True)
    for k, v in ratios.items():
        print(f"this/baseline {k}: min {min(v):.3f} median {sorted(v)[len(v) // 2]:.3f} "
              f"max {max(v):.3f} over {len(v)} rounds")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
