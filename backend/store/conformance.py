"""Both stores satisfy every Protocol of `protocols`: a static proof, not a runtime one.

`make lint` runs mypy on this module; each assignment below type-checks only if the store has
every method of the Protocol with a compatible signature. Nothing imports it at run time.
"""

from __future__ import annotations

from . import protocols
from .postgres import PostgresStore
from .sqlite import SqliteStore


def sqlite_conforms(store: SqliteStore) -> None:
    db: protocols.Db = store
    vehicles: protocols.Vehicles = store
    readings: protocols.Readings = store
    history: protocols.History = store
    geofences: protocols.Geofences = store
    commands: protocols.Commands = store
    accounts: protocols.Accounts = store
    alerts: protocols.Alerts = store
    service: protocols.Service = store
    dispatch: protocols.Dispatch = store
    driver: protocols.Driver = store
    proposals: protocols.Proposals = store
    links: protocols.Links = store
    partitions: protocols.Partitions = store
    notify: protocols.Notify = store
    driving: protocols.Driving = store
    image_parts: protocols.ImageParts = store
    action_letters: protocols.ActionLetters = store
    owners: protocols.Owners = store
    whole: protocols.Store = store
    del db, vehicles, readings, history, geofences, commands, accounts, alerts, service
    del dispatch, driver, proposals, links, partitions, notify, driving, image_parts, whole
    del action_letters, owners


def postgres_conforms(store: PostgresStore) -> None:
    db: protocols.Db = store
    vehicles: protocols.Vehicles = store
    readings: protocols.Readings = store
    history: protocols.History = store
    geofences: protocols.Geofences = store
    commands: protocols.Commands = store
    accounts: protocols.Accounts = store
    alerts: protocols.Alerts = store
    service: protocols.Service = store
    dispatch: protocols.Dispatch = store
    driver: protocols.Driver = store
    proposals: protocols.Proposals = store
    links: protocols.Links = store
    partitions: protocols.Partitions = store
    notify: protocols.Notify = store
    driving: protocols.Driving = store
    image_parts: protocols.ImageParts = store
    action_letters: protocols.ActionLetters = store
    owners: protocols.Owners = store
    replication: protocols.Replication = store  # PostgreSQL only
    whole: protocols.Store = store
    del db, vehicles, readings, history, geofences, commands, accounts, alerts, service
    del dispatch, driver, proposals, links, partitions, notify, driving, image_parts, whole
    del action_letters, owners
    del replication
