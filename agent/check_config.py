"""`fleet-agent check-config FILE`: validate an agent.toml as the daemon would, errors as FILE:LINE.

It runs the daemon's own parsing (agent/config.py, each source's `make_source(s)`, the [log]
and [status] checks), so it can never accept what the daemon refuses. The parsers name the
table and key of a problem; `locate()` finds that key's line in the file (tomllib keeps no
positions), falling back to the table's header line.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib

KNOWN_TABLES = {"vehicle", "server", "journal", "gps", "can", "log", "status", "cab"}
STATUS_KEYS = {"socket", "prometheus_textfile", "report_interval_s"}
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_HEADER = re.compile(r"^\s*\[(\[)?\s*([\w.\-]+)\s*\]")
_TABLE = re.compile(r"\[\[?([\w.]+)\]\]?(?: '([^']*)'| #(\d+))?")
# the key a message is about: `signals[0]: ...` or `'baud' must ...`
_KEY = re.compile(r"^\s*(\w+)\[\d+\]|'([\w.]+)'")


def _blocks(lines: list[str]) -> list[tuple[str, int, int]]:
    """(table name, header line number, end line) for each [table] / [[array]] in the file."""
    heads = []
    for n, line in enumerate(lines, 1):
        m = _HEADER.match(line)
        if m:
            heads.append((m.group(2), n))
    ends = [n - 1 for _, n in heads[1:]] + [len(lines)] * bool(heads)  # none: no tables
    return [(name, start, end) for (name, start), end in zip(heads, ends, strict=True)]


def locate(text: str, message: str) -> int | None:
    """The line a ConfigError message is about, or None."""
    lines = text.splitlines()
    m = _TABLE.search(message)
    if not m:
        return None
    table, bus_name, bus_index = m.group(1), m.group(2), m.group(3)
    blocks = [b for b in _blocks(lines) if b[0] == table]
    if bus_index:
        blocks = blocks[int(bus_index) - 1:int(bus_index)]
    elif bus_name is not None:
        named = [b for b in blocks if any(
            re.match(rf"""^\s*name\s*=\s*["']{re.escape(bus_name)}["']""", line)
            for line in lines[b[1]:b[2]])]
        blocks = named or blocks
    if not blocks:
        return None
    _, start, end = blocks[0]
    key = _KEY.search(message[m.end():])
    if key:
        name = key.group(1) or key.group(2)
        for n in range(start, end):
            if re.match(rf"^\s*{re.escape(name)}\s*=", lines[n]):
                return n + 1
    return start


def check(path: str) -> list[str]:
    """Every problem found, as "FILE:LINE: message" (LINE omitted when unknown); [] if fine."""
    from .config import ConfigError, load_config
    from .daemon import build_sources
    from .logging_setup import parse_level

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        return [f"{path}: {exc.strerror}"]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pos = _TOML_POS.search(str(exc))
        where = f"{path}:{pos.group(1)}:{pos.group(2)}" if pos else path
        return [f"{where}: {_TOML_POS.sub('', str(exc)).strip()}"]
    problems = []
    for table in sorted(set(raw) - KNOWN_TABLES):
        known = ", ".join(sorted(KNOWN_TABLES))
        problems.append(f"{path}: unknown table [{table}] (known: {known})")
    try:
        config = load_config(path)
        if "level" in config.log:
            parse_level(config.log["level"], f"{path} [log]")
        unknown = set(config.status) - STATUS_KEYS
        if unknown:
            raise ConfigError(f"{path} [status]: unknown key {sorted(unknown)[0]!r}")
        interval = config.status.get("report_interval_s", 30)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 1:
            raise ConfigError(f"{path} [status]: 'report_interval_s' must be a number ≥ 1")
        build_sources(config)
    except ConfigError as exc:
        message = str(exc)
        line = locate(text, message)
        detail = message.removeprefix(path).lstrip(": ")
        problems.append(f"{path}:{line}: {detail}" if line else f"{path}: {detail}")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="fleet-agent check-config",
        description="Validate an agent.toml as the daemon would; each problem as FILE:LINE. "
        "Exit 0 if it is valid, 1 if not, 2 on a usage error.")
    parser.add_argument("file", metavar="FILE", help="the agent's TOML configuration")
    path = parser.parse_args(argv).file
    problems = check(path)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{path}: OK")
    return 1 if problems else 0
