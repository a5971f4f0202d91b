"""Who may do what over HTTP: roles, the authenticated principal, per-route requirements.

Every aiohttp handler declares what it needs with `@requires(Role.X)` or `@public`; the access
middleware (backend/auth/) refuses a request whose handler declares nothing, so a route added
without a decision is closed, not open (deny by default). The middleware puts the request's
`Principal` at `request[PRINCIPAL]`; handlers filter vehicles with `principal.may_see()`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

ACCESS_ATTR = "fleet_access"
PUBLIC = "public"


class Role(enum.IntEnum):
    """Each role may do everything the roles below it may."""

    VIEWER = 1  # reads positions, routes, trips, geofences, alerts, commands
    DISPATCHER = 2  # also sends commands, acknowledges alerts, edits geofences
    ADMIN = 3  # also manages users, groups and vehicles

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r} (admin, dispatcher or viewer)") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Principal:
    """The user (or API token) behind one request."""

    user_id: int
    name: str
    role: Role
    # None: every vehicle; otherwise only these (the union of the user's groups)
    vehicles: frozenset[str] | None = None
    via: str = "session"  # "session" (cookie, CSRF-checked writes) or "token" (Bearer)

    def may(self, role: Role) -> bool:
        return self.role >= role

    def may_see(self, vehicle_id: str) -> bool:
        return self.vehicles is None or vehicle_id in self.vehicles


# where the access middleware leaves the request's Principal (or None); a RequestKey, not a
# string, so aiohttp does not warn (NotAppKeyWarning) and type checkers know what it holds
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("fleet.principal", Principal)


def requires(role: Role) -> Callable:
    """Mark a handler as open to `role` and the roles above it."""

    def mark(handler: Callable) -> Callable:
        setattr(handler, ACCESS_ATTR, role)
        return handler

    return mark


def public(handler: Callable) -> Callable:
    """Mark a handler as open to anyone: only for data-free routes (health, login, assets)."""
    setattr(handler, ACCESS_ATTR, PUBLIC)
    return handler


def access_of(handler: Callable) -> Role | str | None:
    """What a handler declared: a `Role`, `PUBLIC`, or None (nothing: refuse)."""
    return getattr(handler, ACCESS_ATTR, None)
