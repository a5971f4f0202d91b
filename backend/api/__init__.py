"""REST route modules. The contract is backend/openapi.yaml (served at /api/openapi.json);
docs/api.md shows how to log in and call it. Each handler declares its role (backend/authz.py)
and filters vehicles by `Principal.may_see`."""

from __future__ import annotations

from aiohttp import web

from . import (
    action_letters,
    commands,
    dispatch,
    driver,
    driving,
    export,
    geofences,
    history,
    integrations,
    links,
    maintenance,
    notifications,
    planning,
    spec,
    vehicles,
)
from .common import GATEWAY, HUB, STORE


def add_routes(app: web.Application, store, hub, gateway) -> None:
    app[STORE], app[HUB], app[GATEWAY] = store, hub, gateway
    for module in (spec, vehicles, history, geofences, commands, dispatch, planning,
                   maintenance, links, integrations, driver, driving, export,
                   notifications, action_letters):
        module.add_routes(app)
