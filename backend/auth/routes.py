"""Login, logout, "who am I" and the password change: GET /login, POST /api/login,
POST /api/logout, GET /api/me, GET /password, POST /api/me/password.

A login whose password is below today's policy (backend/auth/policy.py) succeeds, but marks
the account `must_change_password`: its sessions may then only change the password (the
access middleware refuses the rest), and the login page leads to /password."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

from aiohttp import web

from ..authz import PRINCIPAL, public, signed_in
from .middleware import auth_state, client_of, cookie_name, error, is_secure, session_cookie
from .passwords import csrf_for, hash_token, needs_rehash, new_token, verify_password
from .policy import password_problem

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[1] / "static"
MAX_LOGIN_BODY = 4096  # a name and a password; anything bigger is not a login
# Argon2 checks at once: each takes ~0.1 s of a core and 64 MiB, so a flood of logins from
# many addresses (past the per-address limit) gets 503 instead of the backend's CPU and memory.
MAX_CONCURRENT_LOGINS = 4


def _user(account: dict) -> dict:
    """Who is signed in; a driver login says which driver (and no role: it has none)."""
    driver = account.get("driver")
    if driver is not None:
        return {"name": account["name"], "role": "driver", "groups": [],
                "driver_id": driver["id"]}
    return {"name": account["name"], "role": account["role"], "groups": account["groups"]}


def _body(user: dict, cookie: str, expires_ms: int) -> dict:
    return {"user": _user(user), "csrf_token": csrf_for(cookie), "expires_ms": expires_ms,
            "must_change_password": user["must_change_password"]}


@public
async def login_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "app" / "login.html")  # the web app's (web/src)


@public  # the page holds no data; its form needs a session (and the current password)
async def password_page(request: web.Request) -> web.StreamResponse:
    if request[PRINCIPAL] is None:
        raise web.HTTPFound("/login?next=/password")
    return web.FileResponse(STATIC / "app" / "password.html")


async def _two_texts(request: web.Request, a: str,
                     b: str) -> tuple[str, str] | web.Response:
    """Fields `a` and `b` of a small JSON body, both text, or the refusal to answer with (JSON
    only: a cross-site HTML form cannot send it)."""
    if request.content_type != "application/json":
        return error(415, "send application/json")
    if (request.content_length or 0) > MAX_LOGIN_BODY:
        return error(413, "too large")
    try:
        body = await request.json()
        first, second = body[a], body[b]
        if not isinstance(first, str) or not isinstance(second, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return error(400, f'expected {{"{a}": text, "{b}": text}}')
    return first, second


@public
async def login(request: web.Request) -> web.Response:
    # JSON only: a cross-site HTML form cannot send it, so nobody can log a browser in as
    # someone else (login CSRF)
    texts = await _two_texts(request, "username", "password")
    if isinstance(texts, web.Response):
        return texts
    name, password = texts
    state = auth_state(request)
    address = client_of(request)
    now = state.clock()
    wait = state.limiter.retry_after(name, address, now)
    if wait:
        return error(429, "too many failed logins; try later",
                     **{"Retry-After": str(math.ceil(wait))})
    if state.verifying >= MAX_CONCURRENT_LOGINS:
        return error(503, "busy; try again", **{"Retry-After": "1"})
    state.verifying += 1
    try:
        user = await state.store.user(name)
        ok = await asyncio.get_running_loop().run_in_executor(
            None, verify_password, user["password_hash"] if user else None, password)
    finally:
        state.verifying -= 1
    if not ok or user["disabled"]:
        state.limiter.failed(name, address, now)
        state.failed_logins += 1
        log.info("login failed for %r from %s", name[:64], address)
        return error(401, "invalid credentials")
    state.limiter.succeeded(name)
    if password_problem(password, name) is not None and not user["must_change_password"]:
        # set by a policy older than today's: this login may only change it
        await state.store.update_user(name, must_change_password=True)
    elif needs_rehash(user["password_hash"]):
        from .accounts import hash_off_loop

        await state.store.update_user(name, password_hash=await hash_off_loop(password))
    log.info("login %r (%s) from %s", name, user["role"], address)
    return await _new_session(request, user["id"])


async def _new_session(request: web.Request, user_id: int) -> web.Response:
    """Start a session for the user: the login answer, with its cookie."""
    state = auth_state(request)
    cookie = new_token()
    now_ms = state.now_ms()
    await state.store.prune_sessions(*state.policy.prune_before(now_ms))
    await state.store.add_session(hash_token(cookie), user_id, now_ms)
    account = await state.store.account(user_id)
    response = web.json_response(_body(account, cookie, state.policy.expires_ms(now_ms, now_ms)))
    response.set_cookie(cookie_name(request), cookie, httponly=True, samesite="Strict",
                        path="/", secure=is_secure(request))
    return response


@signed_in
async def logout(request: web.Request) -> web.Response:
    cookie = session_cookie(request)
    if cookie:
        await auth_state(request).store.delete_session(hash_token(cookie))
        auth_state(request).access_changed()  # this session's sockets close now
    response = web.Response(status=204)
    response.del_cookie(cookie_name(request), path="/", secure=is_secure(request))
    return response


@signed_in
async def me(request: web.Request) -> web.Response:
    state = auth_state(request)
    principal = request[PRINCIPAL]
    account = await state.store.account(principal.user_id)
    cookie = session_cookie(request)
    if principal.via == "session" and cookie:
        session = await state.store.session(hash_token(cookie))
        if session is None:  # logged out by another request meanwhile
            return error(401, "authentication required")
        expires = state.policy.expires_ms(session["created_ms"], session["seen_ms"])
        return web.json_response(_body(account, cookie, expires))
    return web.json_response({"user": _user(account), "csrf_token": None, "expires_ms": None,
                              "must_change_password": False})


@signed_in
async def change_password(request: web.Request) -> web.Response:
    """POST {"current_password", "new_password"}: the user's own password, checked against the
    current one (rate-limited like a login). Every session of the user ends; a browser gets a
    new one (cookie and CSRF token) in the answer."""
    texts = await _two_texts(request, "current_password", "new_password")
    if isinstance(texts, web.Response):
        return texts
    current, new = texts
    state, principal = auth_state(request), request[PRINCIPAL]
    address, now = client_of(request), state.clock()
    wait = state.limiter.retry_after(principal.name, address, now)
    if wait:
        return error(429, "too many failed attempts; try later",
                     **{"Retry-After": str(math.ceil(wait))})
    user = await state.store.user(principal.name)
    ok = await asyncio.get_running_loop().run_in_executor(
        None, verify_password, user["password_hash"] if user else None, current)
    if not ok:
        state.limiter.failed(principal.name, address, now)
        return error(403, "the current password is wrong")
    problem = password_problem(new, principal.name)
    if problem is None and new == current:
        problem = "the new password must differ from the current one"
    if problem is not None:
        return error(400, problem)
    from ..audit import audit
    from .accounts import hash_off_loop

    await state.store.update_user(principal.name, password_hash=await hash_off_loop(new),
                                  must_change_password=False)  # ends every session
    state.access_changed()
    await audit(request, "user.password", principal.name)
    log.info("password changed by %r from %s", principal.name, address)
    if principal.via != "session":
        return web.json_response({"user": _user(user | {"groups": sorted(principal.groups)}),
                                  "csrf_token": None, "expires_ms": None,
                                  "must_change_password": False})
    return await _new_session(request, principal.user_id)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/password", password_page)
    app.router.add_post("/api/me/password", change_password)
