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


async def send_command(config: BackendConfig, args: argparse.Namespace) -> int:
    import aiohttp

    host = "127.0.0.1" if config.http_host in ("0.0.0.0", "::") else config.http_host
    scheme = "https" if config.http_cert else "http"
    base = (args.url or f"{scheme}://{host}:{config.http_port}").rstrip("/")
    try:
        headers = {"Authorization": f"Bearer {_api_token(args)}"}
    except (OSError, ValueError) as exc:
        print(f"backend command: {exc}", file=sys.stderr)
        return 2
    ssl_ctx = True  # the system's CAs
    if args.ca:
        import ssl

        ssl_ctx = ssl.create_default_context(cafile=args.ca)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=headers,
                                     connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as http:
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
