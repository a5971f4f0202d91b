"""`fleet-agent status [--json] [--socket PATH]`: ask the running agent (agent/control.py)."""

from __future__ import annotations

import argparse
import json
import sys

from .control import default_socket_path, query
from .status import render


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fleet-agent status",
                                     description="Show the running agent's link, journal and "
                                     "sources (root or group fleet-agent).")
    parser.add_argument("--json", action="store_true", help="the full snapshot as JSON")
    parser.add_argument("--socket", help="status socket (default: [status] socket of --config, "
                        "else $RUNTIME_DIRECTORY or /run/fleet-agent/status.sock)")
    parser.add_argument("--config", help="agent TOML to take [status] socket from")
    args = parser.parse_args(argv)
    path = args.socket
    if path is None:
        section = None
        if args.config:
            from .config import ConfigError, load_config

            try:
                section = load_config(args.config).status
            except ConfigError as exc:
                print(f"fleet-agent status: {exc}", file=sys.stderr)
                return 2
        path = default_socket_path(section)
    try:
        snap = query(path)
    except (OSError, ValueError) as exc:
        print(f"fleet-agent status: no answer on {path}: {exc} (is the agent running? "
              "are you root or in group fleet-agent?)", file=sys.stderr)
        return 3
    print(json.dumps(snap, indent=2, sort_keys=True) if args.json else render(snap))
    return 0
