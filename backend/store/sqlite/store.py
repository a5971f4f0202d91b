"""Embedded SQLite store: the zero-setup default. All calls run on one worker thread.

One mixin per concern (the modules of this package, the same names as backend/store/postgres/),
all on the host `db.SqliteDb` (connection, worker thread, migrations)."""

from __future__ import annotations

from .accounts import SqliteAccounts
from .action_letters import SqliteActionLetters
from .alerts import SqliteAlerts
from .commands import SqliteCommands
from .dispatch import SqliteDispatch
from .driver import SqliteDriver
from .driving import SqliteDriving
from .geofences import SqliteGeofences
from .history import SqliteHistory
from .image_parts import SqliteImageParts
from .links import SqliteLinks
from .notify import SqliteNotify
from .owners import SqliteOwners
from .partitions import SqlitePartitions
from .proposals import SqliteProposals
from .readings import SqliteReadings
from .service import SqliteService
from .vehicles import SqliteVehicles


class SqliteStore(SqliteVehicles, SqliteReadings, SqliteHistory, SqliteGeofences,
                  SqliteCommands, SqliteAccounts, SqliteAlerts, SqliteService, SqlitePartitions,
                  SqliteDispatch, SqliteProposals, SqliteLinks, SqliteNotify,
                  SqliteDriver, SqliteDriving, SqliteImageParts,
                  SqliteActionLetters, SqliteOwners):
    """The embedded store: `SqliteStore(path)`, then `await open()`."""
