"""Accounts and access: users, sessions, API tokens, groups, the access middleware.

Sans-IO cores: `passwords` (Argon2id, tokens), `sessions` (expiry policy taking `now`),
`ratelimit` (login limiter taking `now`), `addresses` (client address behind trusted proxies).
aiohttp edges: `middleware` (resolve the principal, enforce `@requires`/`@public`, CSRF),
`routes` (login, logout, me), `admin` (users, tokens, groups, audit). The `users`/`groups`
CLI is `cli`. Roles and the principal are the contract in backend/authz.py.
"""

from __future__ import annotations

from aiohttp import web

from ..audit import STORE as AUDIT_STORE
from .middleware import AUTH, AuthState, install


def setup(app: web.Application, state: AuthState) -> None:
    """Protect `app` (middleware) and add the login and admin routes."""
    from . import admin, routes

    install(app, state)
    app[AUDIT_STORE] = state.store
    routes.add_routes(app)
    admin.add_routes(app)


__all__ = ["AUTH", "AuthState", "setup"]
