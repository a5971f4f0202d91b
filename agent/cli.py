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
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:
        import importlib

        return importlib.import_module(TOOLS[argv[0]][0]).main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="fleet-agent",
        description="On-vehicle agent: GPS/CAN → SQLite journal → geostream/1.0 over QUIC. "
        "Tools: " + "; ".join(f"{k}: {h}" for k, (_, h) in TOOLS.items()),
    )
    parser.add_argument("command", nargs="?", default="run", choices=["run", *TOOLS])
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="agent TOML file")
    parser.add_argument("--log-level", help="debug, info, warning or error (default: [log] "
                        "level of the config, else info)")
    parser.add_argument("--version", action="version", version=f"fleet-agent {__version__}")
    args = parser.parse_args(argv)
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
