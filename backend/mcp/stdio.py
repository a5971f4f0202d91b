"""`python -m backend mcp`: the MCP server over stdio for a local AI client.

Authenticated once at start with a user's API token (`--token-file`, else $FLEET_API_TOKEN),
resolved by the same function as the HTTP API's Bearer tokens; that user's role and groups
apply to every call. It opens the store directly: a command it sends is stored and reaches the
vehicle when the gateway next welcomes it (docs/protocol.md §3).
"""

from __future__ import annotations

import os
import sys

from ..auth.middleware import token_principal
from ..config import BackendConfig
from ..store import open_store
from .server import build_server
from .tools import FleetTools

TOKEN_ENV = "FLEET_API_TOKEN"


def read_token(token_file: str | None) -> str:
    if token_file:
        with open(token_file) as f:
            return f.read().strip()
    return os.environ.get(TOKEN_ENV, "").strip()


async def serve_stdio(config: BackendConfig, token_file: str | None) -> int:
    token = read_token(token_file)
    if not token:
        print(f"backend mcp: no API token (--token-file or ${TOKEN_ENV})", file=sys.stderr)
        return 2
    store = open_store(config.db)
    await store.open()
    try:
        principal = await token_principal(store, token)
        if principal is None:
            print("backend mcp: the API token is not valid", file=sys.stderr)
            return 2
        tools = FleetTools(store, config.alert_rules(), config.maintenance_config())
        tools.notify = config.notify_settings()  # subscriptions: the egress rule, mail
        await build_server(tools, stdio_principal=principal).run_stdio_async()
        return 0
    finally:
        await store.close()
