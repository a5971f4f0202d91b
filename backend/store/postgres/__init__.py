"""The PostgreSQL + PostGIS store, one module per concern (the same names as the SQLite
store's): `db` (pools, migrations, the ms ↔ timestamptz fragments), `vehicles`, `readings`
(the write path), `history` (queries over readings), `geofences`, `commands` (and status
reports), `accounts`, `alerts`, `service` (vehicle service records), `partitions` (daily
partitions made ahead and dropped past retention); `store` composes them into
`PostgresStore`."""

from .store import PostgresStore

__all__ = ["PostgresStore"]
