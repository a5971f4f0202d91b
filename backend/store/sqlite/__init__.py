"""The embedded SQLite store, one module per concern (the same names as the PostgreSQL
store's): `db` (connection, worker thread, migrations), `vehicles`, `readings` (the write
path), `history` (queries over readings), `geofences`, `commands` (and status reports),
`accounts`, `alerts`, `service` (vehicle service records), `partitions` (upkeep: none here);
`store` composes them into `SqliteStore`."""

from .store import SqliteStore

__all__ = ["SqliteStore"]
