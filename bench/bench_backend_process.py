"""What one `python -m backend` process costs: CPU (user + system) and wall time of the
commands the suite and the packaged VM run, and of a backend's start to its ready line.

    .venv/bin/python bench/bench_backend_process.py TREE [TREE …] [--rounds 4]

Each TREE is a checkout (e.g. this one and a baseline worktree of main); its code runs with
this interpreter (PYTHONPATH=TREE, so the virtualenv's editable install does not win). Rounds
alternate the trees' order; printed: min / median / max per command and tree. A command's CPU
is the child's (RUSAGE_CHILDREN), a start's is read from /proc at its ready line, so other
processes' load counts less than in the wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _env(tree: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": tree}


def command(tree: str, args: list[str]) -> tuple[float, float]:
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "backend", *args], cwd=tree, env=_env(tree),
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"{args} failed in {tree}: {done.stderr[-500:]}")
    return _children_cpu() - cpu0, time.perf_counter() - t0


def start(tree: str, db: Path, pki: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "--db", f"sqlite://{db}", "--cert",
         str(pki / "server.pem"), "--key", str(pki / "server.key"), "--quic-host", "127.0.0.1",
         "--quic-port", "0", "--http-port", "0", "--ticket-file", f"{db}.tickets",
         "--log-level", "WARNING"],
        cwd=tree, env=_env(tree), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        wall = time.perf_counter() - t0
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if "backend ready" not in line:
            raise SystemExit(f"no ready line from {tree}: {line!r}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--rounds", type=int, default=4)
    opts = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in opts.trees]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-backend-process-") as tmp:
        for r in range(opts.rounds):
            for i, tree in enumerate(trees if r % 2 == 0 else trees[::-1]):
                d = Path(tmp) / f"{r}-{i}"
                d.mkdir()
                db = d / "fleet.db"
                for name, args in (
                        ("--help", ["--help"]),
                        ("gen-certs", ["gen-certs", "--out", str(d / "pki")]),
                        ("migrate", ["--db", f"sqlite://{db}", "migrate"]),
                        ("vehicles add", ["--db", f"sqlite://{db}", "vehicles", "add", "v1"]),
                        ("users add", ["--db", f"sqlite://{db}", "users", "add", "u1", "--role",
                                       "admin"])):
                    results.setdefault((name, tree), []).append(command(tree, args))
                results.setdefault(("start to ready", tree), []).append(
                    start(tree, db, d / "pki"))
    print(f"{'':16}{'tree':40} CPU s min/median/max    wall s min/median/max")
    for (name, tree), values in results.items():
        cpu = [c for c, _ in values]
        wall = [w for _, w in values]
        print(f"{name:16}{tree[-40:]:40} {min(cpu):.2f} {statistics.median(cpu):.2f} "
              f"{max(cpu):.2f}         {min(wall):.2f} {statistics.median(wall):.2f} "
              f"{max(wall):.2f}")


if __name__ == "__main__":
    main()
