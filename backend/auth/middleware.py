"""The access middleware: who is asking (session cookie or Bearer token), and may they.

For every request: resolve the `Principal` (or None) into `request[PRINCIPAL]`, then apply the
handler's declaration (backend/authz.py): `@public` passes; a role needs a principal (401)
holding that role (403); a handler that declares nothing is refused (deny by default).
Cookie-authenticated writes must carry `X-CSRF-Token`; Bearer requests need none (a browser
never adds that header by itself). Static assets (`app.router.add_static`) are public: they
are the page's code, not data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web

from ..authz import DRIVER, PRINCIPAL, PUBLIC, SIGNED_IN, Principal, Role, access_of
from .addresses import Network, client_address, from_trusted_proxy
from .passwords import csrf_for, hash_token
from .ratelimit import LoginLimiter
from .sessions import SessionPolicy

log = logging.getLogger(__name__)

COOKIE = "fleet_session"
# The session cookie's name under TLS: a browser accepts a `__Host-` cookie only with Secure,
# Path=/ and no Domain, so neither a plain-HTTP page nor a sibling subdomain can plant or
# overwrite it. Over plain HTTP (a laptop, the demo on loopback) the plain name is used.
SECURE_COOKIE = "__Host-" + COOKIE
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# All a session whose password is below the policy may do: who am I, change it, log out.
PASSWORD_CHANGE_PATHS = frozenset({"/api/me", "/api/me/password", "/api/logout"})


@dataclass
class AuthState:
    """What the auth edge keeps per application."""

    store: object
    policy: SessionPolicy = field(default_factory=SessionPolicy)
    trusted_proxies: tuple[Network, ...] = ()
    # extra Origins allowed to open /ws with a cookie, besides the page's own host
    allowed_origins: tuple[str, ...] = ()
    clock: Callable[[], float] = time.time  # seconds since the epoch; tests pass a fake one
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    failed_logins: int = 0
    verifying: int = 0  # password checks running now (each ~0.1 s of CPU)
    # one Event per open WebSocket, set when an admin changed accounts, groups or tokens or a
    # session ended, so the socket re-checks its principal at once (not after WS_RECHECK_S)
    watchers: set[asyncio.Event] = field(default_factory=set)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def access_changed(self) -> None:
        """Who may see what may have changed: every open WebSocket re-checks now."""
        for event in self.watchers:
            event.set()


AUTH = web.AppKey("fleet.auth", AuthState)


def auth_state(request: web.Request) -> AuthState:
    return request.app[AUTH]


def client_of(request: web.Request) -> str:
    state = auth_state(request)
    return client_address(request.remote, request.headers.get("X-Forwarded-For"),
                          state.trusted_proxies)


def is_secure(request: web.Request) -> bool:
    """TLS to the client: ours, or a trusted reverse proxy's (X-Forwarded-Proto: https)."""
    if request.secure:
        return True
    return (from_trusted_proxy(request.remote, auth_state(request).trusted_proxies)
            and request.headers.get("X-Forwarded-Proto", "").lower() == "https")


def cookie_name(request: web.Request) -> str:
    """The session cookie's name for this request (`__Host-…` under TLS)."""
    return SECURE_COOKIE if is_secure(request) else COOKIE


def session_cookie(request: web.Request) -> str | None:
    """The session cookie's value; under TLS only the `__Host-` one counts."""
    return request.cookies.get(cookie_name(request)) or None


def error(status: int, text: str, **headers) -> web.Response:
    return web.json_response({"error": text}, status=status, headers=headers or None)


def unauthorized() -> web.Response:
    return error(401, "authentication required", **{"WWW-Authenticate": 'Bearer realm="fleet"'})


async def principal_of(state: AuthState, user_id: int, via: str) -> Principal | None:
    account = await state.store.account(user_id)
    if account is None or account["disabled"]:
        return None
    vehicles = account["vehicles"]
    driver = account.get("driver")
    if driver is not None:  # the driver capability only, whatever the role column says
        if not driver["active"]:
            return None
        return Principal(user_id=account["id"], name=account["name"], role=Role.VIEWER,
                         vehicles=frozenset(), via=via, driver_id=driver["id"],
                         must_change_password=via == "session"
                         and account["must_change_password"])
    return Principal(user_id=account["id"], name=account["name"], role=Role.parse(account["role"]),
                     vehicles=None if vehicles is None else frozenset(vehicles), via=via,
                     groups=frozenset(account["groups"]),
                     must_change_password=via == "session" and account["must_change_password"])


async def token_principal(store, token: str) -> Principal | None:
    """The principal behind an API token (HTTP Bearer, MCP over stdio), else None."""
    user_id = await store.token_user(hash_token(token))
    return None if user_id is None else await principal_of(AuthState(store=store), user_id,
                                                           "token")


async def resolve(request: web.Request) -> Principal | None:
    """The principal behind the request's Bearer token or session cookie, else None."""
    state = auth_state(request)
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return await token_principal(state.store, token.strip())
    cookie = session_cookie(request)
    if not cookie:
        return None
    digest = hash_token(cookie)
    session = await state.store.session(digest)
    if session is None:
        return None
    now = state.now_ms()
    if not state.policy.alive(session["created_ms"], session["seen_ms"], now):
        await state.store.delete_session(digest)
        return None
    if state.policy.needs_touch(session["seen_ms"], now):
        await state.store.touch_session(digest, now)
    return await principal_of(state, session["user_id"], "session")


def _declared(request: web.Request):
    route = request.match_info.route
    if isinstance(getattr(route, "resource", None), web.StaticResource):
        return PUBLIC
    return access_of(request.match_info.handler)


@web.middleware
async def access_middleware(request: web.Request, handler):
    principal = await resolve(request)
    request[PRINCIPAL] = principal
    if request.match_info.http_exception is not None:  # no such route / method
        return unauthorized() if principal is None else await handler(request)
    declared = _declared(request)
    if declared == PUBLIC:
        return await handler(request)
    if principal is None:
        return unauthorized()
    if declared == SIGNED_IN:
        pass
    elif declared == DRIVER or principal.is_driver:
        if declared != DRIVER or not principal.is_driver:
            return error(403, "drivers only" if declared == DRIVER
                         else "not open to the driver app")
    elif not isinstance(declared, Role):
        log.error("refused %s %s: the handler declares no access (@requires or @public)",
                  request.method, request.match_info.route.resource)
        return error(403, "forbidden")
    elif not principal.may(declared):
        return error(403, f"needs role {declared.label}")
    if principal.via == "session" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, csrf_for(session_cookie(request) or "")):
            return error(403, f"missing or wrong {CSRF_HEADER} header")
    if principal.must_change_password and request.path not in PASSWORD_CHANGE_PATHS:
        return error(403, "password change required (POST /api/me/password)")
    return await handler(request)


def origin_allowed(request: web.Request) -> bool:
    """A cookie-authenticated WebSocket must come from our own page (or a configured Origin):
    SameSite keeps other sites' cookies off, this keeps other sites' scripts off."""
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser: browsers always send Origin on a WebSocket
        return True
    if origin in auth_state(request).allowed_origins:
        return True
    scheme, _, host = origin.partition("://")
    return scheme in ("http", "https") and host == request.host


# An open WebSocket re-checks its session or token this often, and at once after
# `AuthState.access_changed()`: an expiry, or a change made outside this process (the CLI,
# another node), ends or narrows the live feed within this time (a check also counts as use).
WS_RECHECK_S = 60.0


async def watch_session(ws: web.WebSocketResponse, request: web.Request,
                        on_change: Callable[[Principal], None] | None = None) -> None:
    """Run beside an open WebSocket: close it (1008) once its credentials no longer hold, and
    hand a changed principal (role, groups) to `on_change` so the socket is re-filtered."""
    state = auth_state(request)
    changed = asyncio.Event()
    state.watchers.add(changed)
    try:
        while not ws.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WS_RECHECK_S):
                    await changed.wait()
            changed.clear()
            principal = await resolve(request)
            if principal is None:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session ended")
                return
            if principal != request[PRINCIPAL]:
                request[PRINCIPAL] = principal
                if on_change is not None:
                    on_change(principal)
    finally:
        state.watchers.discard(changed)


def install(app: web.Application, state: AuthState) -> None:
    """Put the access middleware in front of every route of `app`."""
    app[AUTH] = state
    app.middlewares.append(access_middleware)
