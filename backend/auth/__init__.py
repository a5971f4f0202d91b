"""Accounts and access: users, sessions, API tokens, groups, the access middleware.

Sans-IO cores: `passwords` (Argon2id, tokens), `sessions` (expiry policy taking `now`),
`ratelimit` (login limiter taking `now`), `addresses` (client address behind trusted proxies).
aiohttp edges: `middleware` (resolve the principal, enforce `@requires`/`@public`, CSRF),
`routes` (login, logout, me), `admin` (users, tokens, groups, audit). The `users`/`groups`
CLI is `cli`. Roles and the principal are the contract in backend/authz.py.

`AUTH`, `AuthState` and `setup` load the aiohttp side when first used (PEP 562): a command
that only needs the CLI or the sans-IO cores (`vehicles add`, `users …`) does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from .middleware import AUTH, AuthState


def setup(app: web.Application, state: AuthState) -> None:
    """Protect `app` (middleware) and add the login and admin routes."""
    from ..audit import STORE as AUDIT_STORE
    from . import admin, routes
    from .middleware import install

    install(app, state)
    app[AUDIT_STORE] = state.store
    routes.add_routes(app)
    admin.add_routes(app)


def __getattr__(name: str) -> object:
    if name in ("AUTH", "AuthState"):
        from . import middleware

        value = getattr(middleware, name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AUTH", "AuthState", "setup"]
