"""PostgreSQL + PostGIS store (asyncpg). Timescale hypertable when available, else native
daily range partitions kept by `maintain()` (partitions.py).

One mixin per concern (the modules of this package, the same names as backend/store/sqlite/),
all on the host `db.PostgresDb` (pools, migrations)."""

from __future__ import annotations

from .accounts import PostgresAccounts
from .action_letters import PostgresActionLetters
from .alerts import PostgresAlerts
from .commands import PostgresCommands
from .db import POOL_MAX, PostgresDb
from .dispatch import PostgresDispatch
from .driver import PostgresDriver
from .driving import PostgresDriving
from .geofences import PostgresGeofences
from .history import PostgresHistory
from .image_parts import PostgresImageParts
from .links import PostgresLinks
from .notify import PostgresNotify
from .owners import PostgresOwners
from .partitions import MAINTAIN_EVERY_S
from .proposals import PostgresProposals
from .readings import PostgresReadings
from .service import PostgresService
from .vehicles import PostgresVehicles


class PostgresStore(PostgresVehicles, PostgresReadings, PostgresHistory, PostgresGeofences,
                    PostgresCommands, PostgresAccounts, PostgresAlerts, PostgresService,
                    PostgresDispatch, PostgresProposals, PostgresLinks, PostgresNotify,
                    PostgresDriver, PostgresDriving, PostgresImageParts,
                    PostgresActionLetters, PostgresOwners):
    """`PostgresStore(url)`, then `await open()`; `maintain_every_s=0` runs no partition job
    (someone else's maintenance, or a test calling `maintain` itself)."""

    def __init__(self, url: str, pool_max: int = POOL_MAX,
                 maintain_every_s: float = MAINTAIN_EVERY_S):
        PostgresDb.__init__(self, url, pool_max)
        self._init_partitions(maintain_every_s)
        self._init_readings()
        self._init_vehicles()
        self._init_commands()

    async def open(self, migrate: bool = True) -> None:
        await self._open_pools(migrate)
        self._start_partition_job()

    async def close(self) -> None:
        await self._stop_partition_job()
        await self._close_pools()
