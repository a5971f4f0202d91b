"""`fleet-agent cab pair|unpair|devices`: pair the in-cab tablet with the running agent (over
its status socket, agent/control.py: root or group fleet-agent only). docs/driver.md."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from ..control import default_socket_path, query


def _socket(args, prog: str) -> str | None:
    if args.socket:
        return args.socket
    section = None
    if args.config:
        from ..config import ConfigError, load_config

        try:
            section = load_config(args.config).status
        except ConfigError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return None
    return default_socket_path(section)


def main(argv: list[str]) -> int:
    prog = "fleet-agent cab"
    parser = argparse.ArgumentParser(
        prog=prog, description="The in-cab tablet: `pair` prints a one-time code (10 minutes), "
        "the URL to open on the tablet and the server key's pin; `unpair DEVICE` (or --all) "
        "revokes a tablet; `devices` lists them.")
    parser.add_argument("op", choices=["pair", "unpair", "devices"])
    parser.add_argument("device", nargs="?", help="unpair: the device id (see `devices`)")
    parser.add_argument("--all", action="store_true", help="unpair: every device")
    parser.add_argument("--json", action="store_true", help="the agent's answer as JSON")
    parser.add_argument("--socket", help="status socket (default: [status] socket of --config, "
                        "else $RUNTIME_DIRECTORY or /run/fleet-agent/status.sock)")
    parser.add_argument("--config", help="agent TOML to take [status] socket from")
    args = parser.parse_args(argv)
    request: dict = {"op": args.op}
    if args.op == "unpair":
        if bool(args.device) == args.all:
            parser.error("unpair: name one DEVICE or --all")
        request["device"] = None if args.all else args.device
    path = _socket(args, prog)
    if path is None:
        return 2
    try:
        answer = query(path, line=b"cab " + json.dumps(request).encode() + b"\n")
    except (OSError, ValueError) as exc:
        print(f"{prog}: no answer on {path}: {exc} (is the agent running? are you root or "
              "in group fleet-agent?)", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    elif not answer.get("ok"):
        print(f"{prog}: {answer.get('error')}", file=sys.stderr)
    elif args.op == "pair":
        print(f"pairing code: {answer['code']} (valid {answer['valid_s'] / 60:.0f} minutes, "
              "once)")
        print(f"open on the tablet: {answer['url']}")
        print(f"server key pin (SHA-256 of its SubjectPublicKeyInfo, base64): {answer['pin']}")
        print(f"or install this CA certificate on the tablet: {answer['ca_file']}")
    elif args.op == "unpair":
        print(f"unpaired {answer['removed']} device(s)")
    else:
        for d in answer["devices"]:
            seen = d["seen_ms"] and dt.datetime.fromtimestamp(d["seen_ms"] / 1000, dt.UTC)
            print(f"{d['id']}  {d['label']}  last seen {seen or 'never'}")
    return 0 if answer.get("ok") else 1
