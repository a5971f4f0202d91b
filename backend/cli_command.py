"""`python -m backend command …`: send a downlink command through the running backend's
HTTP API with a user's API token, and wait for the agent's answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from .config import BackendConfig


def _api_token(args: argparse.Namespace) -> str:
    import os

    if args.token_file:
        with open(args.token_file) as f:
            return f.read().strip()
    token = os.environ.get("FLEET_API_TOKEN", "").strip()
    if not token:
        raise ValueError("no API token: set FLEET_API_TOKEN or --token-file "
                         "(create one with `python -m backend users token NAME`)")
    return token


def add_api_flags(p: argparse.ArgumentParser, role: str = "user") -> None:
    """The flags of a subcommand that calls the running backend's HTTP API."""
    p.add_argument("--token-file", help=f"file holding an API token of a {role} "
                   "(`users token NAME`); default: $FLEET_API_TOKEN")
    p.add_argument("--url", help="the backend's base URL (default: http://HTTP_HOST:PORT)")
    p.add_argument("--ca", help="CA file to check an HTTPS backend's certificate with")


def api_session(config: BackendConfig, args: argparse.Namespace):
    """(base URL, an aiohttp session sending the user's token); ValueError/OSError when no
    token can be read."""
    import aiohttp

    host = "127.0.0.1" if config.http_host in ("0.0.0.0", "::") else config.http_host
    scheme = "https" if config.http_cert else "http"
    base = (args.url or f"{scheme}://{host}:{config.http_port}").rstrip("/")
    headers = {"Authorization": f"Bearer {_api_token(args)}"}
    ssl_ctx: object = True  # the system's CAs
    if args.ca:
        import ssl

        ssl_ctx = ssl.create_default_context(cafile=args.ca)
    return base, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=headers,
                                       connector=aiohttp.TCPConnector(ssl=ssl_ctx))


async def send_command(config: BackendConfig, args: argparse.Namespace) -> int:
    try:
        base, session = api_session(config, args)
    except (OSError, ValueError) as exc:
        print(f"backend command: {exc}", file=sys.stderr)
        return 2
    async with session as http:
        async with http.post(f"{base}/api/vehicles/{args.vehicle_id}/commands",
                             json={"name": args.name, "args": json.loads(args.args)}) as r:
            body = await r.json()
            if r.status != 202:
                print(json.dumps(body), file=sys.stderr)
                return 1
        cid = body["id"]
        deadline = asyncio.get_running_loop().time() + args.wait
        while True:
            async with http.get(f"{base}/api/commands/{cid}") as r:
                state = await r.json()
            if state.get("state") == "answered" or asyncio.get_running_loop().time() > deadline:
                print(json.dumps({"id": cid, **state}))
                return 0 if state.get("ok") else 1
            await asyncio.sleep(0.2)
