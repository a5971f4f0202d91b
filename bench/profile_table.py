"""The cProfile table the benches print: each function's self and cumulative time and calls,
divided by the bench's unit (an exchange, an acked reading, a vehicle-second)."""

from __future__ import annotations

import pstats
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def print_profile(stats: pstats.Stats, per: float, unit: str, top: int) -> None:
    """The `top` functions by self time, each figure per `unit` (`per` of them were run)."""
    print(f"  {'self µs':>8} {'cum µs':>8} {unit:>7}  function")
    for (file, line, func), (_, nc, tt, ct, _) in sorted(
            stats.stats.items(), key=lambda kv: -kv[1][2])[:top]:
        short = file.split("site-packages/")[-1].removeprefix(f"{ROOT}/")
        print(f"  {tt * 1e6 / per:8.2f} {ct * 1e6 / per:8.2f} {nc / per:7.2f}  "
              f"{func} ({short}:{line})")
