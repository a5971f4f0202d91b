"""Who may do what over HTTP: roles, the authenticated principal, per-route requirements.

Every aiohttp handler declares what it needs with `@requires(Role.X)` or `@public`; the access
middleware (backend/auth/) refuses a request whose handler declares nothing, so a route added
without a decision is closed, not open (deny by default). The middleware puts the request's
`Principal` at `request[PRINCIPAL]`; handlers filter vehicles with `principal.may_see()`.

Drivers are not a rung of the ladder: an account that a `drivers` row links (its
`account_id`) logs in with the driver capability only (`Principal.driver_id`). Such a
principal passes only handlers declared `@for_driver` (the driver app's routes, which show
the vehicle and route of the driver's current shift); every other route answers 403, whatever
the account's role column says (docs/driver.md).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

ACCESS_ATTR = "fleet_access"
PUBLIC = "public"
# the access of the driver app's routes: driver principals only (`for_driver`)
DRIVER = "driver"
# any signed-in principal, drivers included: only routes about the caller's own login (who
# am I, change my password, log out)
SIGNED_IN = "signed-in"


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
    # None: every vehicle (an admin, or a user with the all-vehicles scope); otherwise only
    # these, the union of the user's groups, empty without a group (access fails closed)
    vehicles: frozenset[str] | None = frozenset()
    via: str = "session"  # "session" (cookie, CSRF-checked writes) or "token" (Bearer)
    groups: frozenset[str] = frozenset()
    # a session whose password is below the policy: it may only change it (backend/auth/)
    must_change_password: bool = False
    # the drivers row this login is bound to: a driver principal may use only the routes
    # declared `@for_driver` (the access middleware), and sees no vehicle through any other
    driver_id: str | None = None

    @property
    def is_driver(self) -> bool:
        return self.driver_id is not None

    def may(self, role: Role) -> bool:
        return not self.is_driver and self.role >= role

    def may_see(self, vehicle_id: str) -> bool:
        if self.is_driver:  # a driver's vehicle comes from the shift, per request
            return False
        return self.vehicles is None or vehicle_id in self.vehicles

    def may_see_geofence(self, group: str | None) -> bool:
        """A geofence belongs to a group (or to none: fleet-wide); whoever sees every vehicle
        sees every geofence, everyone else those of their own groups."""
        if self.is_driver:
            return False
        return self.vehicles is None or (group is not None and group in self.groups)

    def may_change_geofence(self, group: str | None) -> bool:
        """Dispatchers change the geofences they see: their groups' (all, with every vehicle)."""
        return self.may(Role.DISPATCHER) and self.may_see_geofence(group)


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


def for_driver(handler: Callable) -> Callable:
    """Mark a handler as the driver app's: open to driver principals only (others: 403)."""
    setattr(handler, ACCESS_ATTR, DRIVER)
    return handler


def signed_in(handler: Callable) -> Callable:
    """Mark a handler as open to every signed-in principal (drivers too): its own login only."""
    setattr(handler, ACCESS_ATTR, SIGNED_IN)
    return handler


def access_of(handler: Callable) -> Role | str | None:
    """What a handler declared: a `Role`, `PUBLIC`, `DRIVER`, `SIGNED_IN`, or None (nothing:
    refuse)."""
    return getattr(handler, ACCESS_ATTR, None)
