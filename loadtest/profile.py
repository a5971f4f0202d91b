"""Summarise a py-spy collapsed-stack file: where the samples are, by function.

    python -m loadtest.profile LOG_DIR/gateway0.py-spy.txt [--top 25]

"self" counts samples whose innermost frame is the function; "total" counts samples with the
function anywhere on the stack (once per sample).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "/backend/", "/geostream/", "/agent/", "lib/python3"):
        if marker in path:
            path = path[path.index(marker):].removeprefix("site-packages/")
            break
    return f"{m['func']} ({path})"


def summarise(lines) -> tuple[int, collections.Counter, collections.Counter]:
    own, total = collections.Counter(), collections.Counter()
    n = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        n += c
        frames = [_short(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += c
        for f in set(frames):
            total[f] += c
    return n, own, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args(argv)
    with open(a.file) as f:
        n, own, total = summarise(f)
    print(f"{n} samples")
    print(f"{'self %':>7} {'total %':>8}  function")
    for func, c in own.most_common(a.top):
        print(f"{100 * c / n:7.1f} {100 * total[func] / n:8.1f}  {func}")
    print("\nby total:")
    for func, c in total.most_common(a.top):
        print(f"{100 * c / n:7.1f}  {func}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
