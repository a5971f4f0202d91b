"""The HTTP contract: backend/openapi.yaml, served as JSON at GET /api/openapi.json."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from aiohttp import web

from ..authz import Role, requires

SPEC_FILE = Path(__file__).resolve().parent.parent / "openapi.yaml"


@functools.cache
def document() -> dict:
    """The spec as a dict (parsed once; it ships inside the package)."""
    import yaml  # here: a backend starts without the YAML parser

    with SPEC_FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@functools.cache
def _body() -> bytes:
    return json.dumps(document(), separators=(",", ":")).encode()


@requires(Role.VIEWER)  # data-free, but every route past the login needs a login (docs/api.md)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_body(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
