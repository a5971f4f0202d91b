"""backend/openapi.yaml is a valid OpenAPI 3.1 document and is what /api/openapi.json serves."""

import yaml
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from backend.api import spec
from backend.authz import PUBLIC, Role, access_of
from backend.hub import Hub
from backend.web import make_app
from tests.authhelp import add_user_token, bearer

ROLES = {"public", "metrics", "driver", "signed-in"} | {r.label for r in Role}
METHODS = ("get", "put", "post", "delete", "patch")


def test_spec_is_valid_openapi_31():
    with spec.SPEC_FILE.open() as f:
        raw = yaml.safe_load(f)
    assert raw["openapi"].startswith("3.1")
    validate(raw)  # raises on any violation of the 3.1 schema


def test_every_operation_declares_a_role_and_public_ones_need_no_credentials():
    doc = spec.document()
    ops = [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()
           if m in METHODS]
    assert len(ops) > 30
    for path, method, op in ops:
        role = op.get("x-fleet-role")
        assert role in ROLES, f"{method.upper()} {path}: x-fleet-role {role!r}"
        if role == "public":
            assert op.get("security") == [], f"{method.upper()} {path} is public"
        else:
            assert op.get("security", doc["security"]), f"{method.upper()} {path}"
            assert "401" in op["responses"], f"{method.upper()} {path} lacks its 401"


async def test_served_json_is_the_yaml(tmp_path):
    from backend.store import open_store

    store = open_store(f"sqlite://{tmp_path / 'f.db'}")
    await store.open()
    app = make_app(Hub(), store, lambda: {})
    headers = bearer(await add_user_token(store, role="viewer"))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/api/openapi.json")).status == 401  # needs a login
        resp = await client.get("/api/openapi.json", headers=headers)
        assert resp.status == 200 and resp.content_type == "application/json"
        served = await resp.json()
    await store.close()
    with spec.SPEC_FILE.open() as f:
        assert served == yaml.safe_load(f)
    assert access_of(spec.openapi_json) == Role.VIEWER != PUBLIC
