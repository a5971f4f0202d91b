"""`fleet-agent` command line: the daemon (`run`, the default) and tools."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .config import DEFAULT_CONFIG_PATH

TOOLS = {
    # name: (module, help) — each module has main(argv) -> int
    "nmea-decode": ("agent.gps.cli", "decode raw NMEA bytes to one JSON fix per line"),
    "can-decode": ("agent.can.cli", "decode a CAN log (candump, ASC, BLF, TRC) to JSON lines"),
    "status": ("agent.status_cli", "ask the running agent for its link, journal and sources"),
    "check-config": ("agent.check_config", "validate an agent.toml; errors as FILE:LINE"),
    "cab": ("agent.cab.cli", "pair or unpair the in-cab tablet ([cab]): pair, unpair, devices"),
}


def _parser(run: bool) -> argparse.ArgumentParser:
    """`fleet-agent [run]`'s options; `fleet-agent run --help` shows the daemon's alone."""
    if run:
        parser = argparse.ArgumentParser(
            prog="fleet-agent run",
            description="Run the agent: read GPS and CAN, keep readings in the journal, send "
            "them to the backend (the default command).")
    else:
        parser = argparse.ArgumentParser(
            prog="fleet-agent",
            description="On-vehicle agent: GPS/CAN → SQLite journal → geostream/1.0 over QUIC. "
            "Commands: run: the daemon (the default); " +
            "; ".join(f"{k}: {h}" for k, (_, h) in TOOLS.items()) +
            ". `fleet-agent COMMAND --help` shows a command's own options.")
        parser.add_argument("command", nargs="?", default="run", choices=["run", *TOOLS])
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="agent TOML file")
    parser.add_argument("--log-level", help="debug, info, warning or error (default: [log] "
                        "level of the config, else info)")
    parser.add_argument("--version", action="version", version=f"fleet-agent {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:
        import importlib

        return importlib.import_module(TOOLS[argv[0]][0]).main(argv[1:])
    run = bool(argv) and argv[0] == "run"
    args = _parser(run).parse_args(argv[1:] if run else argv)
    from . import logging_setup
    from .config import ConfigError, load_config
    from .daemon import run_daemon

    try:
        config = load_config(args.config)
        level = logging_setup.parse_level(args.log_level or config.log.get("level", "info"),
                                          f"{args.config} [log]")
    except ConfigError as exc:
        print(f"fleet-agent: {exc}", file=sys.stderr)
        return 2
    logging_setup.setup(level, config.vehicle_id)
    return run_daemon(config, config_path=args.config,
                      level_pinned=args.log_level is not None)
