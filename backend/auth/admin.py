"""Admin routes: users, their API tokens, vehicle groups, the audit trail (docs/operations.md).

GET/POST /api/users, PATCH /api/users/{name}, POST /api/users/{name}/tokens,
DELETE /api/users/{name}/tokens/{id}, GET/POST /api/groups, PUT/DELETE /api/groups/{name},
GET /api/audit. Generated passwords and new tokens are in the answer once, never in a log.
"""

from __future__ import annotations

import re

from aiohttp import web

from ..api.common import VEHICLE_ID, int_param, time_param
from ..audit import audit
from ..authz import Role, requires
from . import accounts
from .middleware import auth_state, error
from .policy import check_password

DEFAULT_AUDIT_LIMIT = 200
MAX_AUDIT_LIMIT = 10_000  # one page of the trail; ask again with an older to_ms for more
ROLES = tuple(r.label for r in Role)
MAX_GROUP_ITEMS = 10_000  # vehicles or members in one PUT
OPEN_END_MS = 10**15  # year ~33658: an open end that every store's time type holds
TOKEN_ID = re.compile(r"[0-9]{1,18}")  # ids are signed 64-bit in both stores


async def _json(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}',
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}',
                                 content_type="application/json")
    return body


def _password(body: dict, user: object) -> str | None:
    """The body's new password, if it has one that the policy accepts (ValueError why not)."""
    if "password" not in body:
        return None
    return check_password(body["password"], user if isinstance(user, str) else None)


def _flag(body: dict, key: str) -> bool | None:
    """A true/false field of the body, None if absent; ValueError if not a boolean."""
    if key not in body:
        return None
    if not isinstance(body[key], bool):
        raise ValueError(f"{key} must be true or false")
    return body[key]


def _role(body: dict) -> str | None:
    """The body's role (exactly as the spec spells them), None if absent; ValueError if bad."""
    if "role" not in body:
        return None
    if body["role"] not in ROLES:
        raise ValueError("role must be admin, dispatcher or viewer")
    return body["role"]


async def _user_records(store, name: str | None = None) -> list[dict]:
    """Users as GET /api/users lists them (with their tokens' ids and labels)."""
    users = [u for u in await store.users() if name is None or u["name"] == name]
    for u in users:
        u["tokens"] = await store.api_tokens(u["name"])
    return users


@requires(Role.ADMIN)
async def list_users(request: web.Request) -> web.Response:
    return web.json_response({"users": await _user_records(auth_state(request).store)})


@requires(Role.ADMIN)
async def create_user(request: web.Request) -> web.Response:
    body = await _json(request)
    try:
        name, role = body.get("name"), _role(body)
        if role is None:
            raise ValueError("role must be admin, dispatcher or viewer")
        all_vehicles = _flag(body, "all_vehicles")
        generated = await accounts.add_user(auth_state(request).store, name, role,
                                            _password(body, name), bool(all_vehicles))
    except ValueError as exc:
        return error(409 if "exists" in str(exc) else 400, str(exc))
    await audit(request, "user.create", name, {"role": role, "all_vehicles": bool(all_vehicles)})
    answer = {"name": name, "role": role, "all_vehicles": bool(all_vehicles)}
    if generated is not None:
        answer["password"] = generated
    return web.json_response(answer, status=201)


@requires(Role.ADMIN)
async def update_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = await _json(request)
    store = auth_state(request).store
    try:
        role = _role(body)
        disabled = _flag(body, "disabled")
        all_vehicles = _flag(body, "all_vehicles")
        password = _password(body, name)
    except ValueError as exc:
        return error(400, str(exc))
    if role not in (None, "admin") or disabled:
        admins = [u["name"] for u in await store.users()
                  if u["role"] == "admin" and not u["disabled"]]
        if admins == [name]:  # nobody could manage accounts over HTTP any more
            return error(409, f"{name!r} is the last enabled admin")
    if not await store.update_user(name, role=role, disabled=disabled,
                                   all_vehicles=all_vehicles):
        return error(404, f"no user {name!r}")
    if password is not None:
        await accounts.set_password(store, name, password)
    auth_state(request).access_changed()
    await audit(request, "user.update", name,
                {"role": role, "disabled": disabled, "all_vehicles": all_vehicles,
                 "password_changed": password is not None})
    [record] = await _user_records(store, name)
    return web.json_response(record)


@requires(Role.ADMIN)
async def create_token(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = await _json(request)
    try:
        label = body.get("label")
        if not isinstance(label, str) or not label:
            raise ValueError("label (what the token is for) must be text of 1..64")
        token_id, token = await accounts.add_token(auth_state(request).store, name, label)
    except ValueError as exc:
        return error(400, str(exc))
    except KeyError:
        return error(404, f"no user {name!r}")
    await audit(request, "token.create", name, {"id": token_id})
    return web.json_response({"id": token_id, "token": token}, status=201)


@requires(Role.ADMIN)
async def delete_token(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not TOKEN_ID.fullmatch(request.match_info["id"]):
        return error(400, "id must be a number")
    token_id = int(request.match_info["id"])
    if not await auth_state(request).store.delete_api_token(name, token_id):
        return error(404, "no such token")
    auth_state(request).access_changed()
    await audit(request, "token.delete", name, {"id": token_id})
    return web.Response(status=204)


@requires(Role.ADMIN)
async def list_groups(request: web.Request) -> web.Response:
    return web.json_response({"groups": await auth_state(request).store.groups()})


def _names(body: dict, key: str, pattern) -> list[str] | None:
    if key not in body:
        return None
    items = body[key]
    if (not isinstance(items, list) or len(items) > MAX_GROUP_ITEMS
            or not all(isinstance(i, str) and pattern.fullmatch(i) for i in items)):
        raise ValueError(f"{key} must be a list of at most {MAX_GROUP_ITEMS} "
                         f"{'vehicle ids' if key == 'vehicles' else 'user names'}")
    return items


async def _put_group(request: web.Request, name: str, status: int) -> web.Response:
    body = await _json(request)
    try:
        accounts.check_name(name, "group name")
        vehicles = _names(body, "vehicles", VEHICLE_ID)
        members = _names(body, "members", accounts.NAME_RE)
        await auth_state(request).store.put_group(name, vehicles, members)
    except ValueError as exc:
        return error(400, str(exc))
    auth_state(request).access_changed()
    await audit(request, "group.put", name, {"vehicles": vehicles, "members": members})
    group = next(g for g in await auth_state(request).store.groups() if g["name"] == name)
    return web.json_response(group, status=status)


@requires(Role.ADMIN)
async def create_group(request: web.Request) -> web.Response:
    body = await _json(request)
    name = body.get("name")
    if any(g["name"] == name for g in await auth_state(request).store.groups()):
        return error(409, f"group {name!r} exists")
    return await _put_group(request, name, 201)


@requires(Role.ADMIN)
async def put_group(request: web.Request) -> web.Response:
    return await _put_group(request, request.match_info["name"], 200)


@requires(Role.ADMIN)
async def delete_group(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not accounts.NAME_RE.fullmatch(name) or not await auth_state(request).store.delete_group(
            name):
        return error(404, f"no group {name!r}")
    auth_state(request).access_changed()
    await audit(request, "group.delete", name)
    return web.Response(status=204)


@requires(Role.ADMIN)
async def audit_trail(request: web.Request) -> web.Response:
    q = request.query
    from_ms = time_param(q, "from_ms") or 0
    to_ms = time_param(q, "to_ms")
    limit = int_param(q, "limit", lo=1, hi=MAX_AUDIT_LIMIT) or DEFAULT_AUDIT_LIMIT
    entries = await auth_state(request).store.audit_entries(
        from_ms, OPEN_END_MS if to_ms is None else to_ms, limit)
    return web.json_response({"entries": entries})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/users", list_users)
    r.add_post("/api/users", create_user)
    r.add_patch("/api/users/{name}", update_user)
    r.add_post("/api/users/{name}/tokens", create_token)
    r.add_delete("/api/users/{name}/tokens/{id}", delete_token)
    r.add_get("/api/groups", list_groups)
    r.add_post("/api/groups", create_group)
    r.add_put("/api/groups/{name}", put_group)
    r.add_delete("/api/groups/{name}", delete_group)
    r.add_get("/api/audit", audit_trail)
