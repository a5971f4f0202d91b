"""The pieces every store shares: which migrations are pending, tokens, `now_ms` (the values it
stores are in `rows`, the interface in `protocols`). It imports no store: the registry in
`backend.store` picks one by URL."""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .rows import (  # noqa: F401  (the interface's values, importable from here too)
    ROW_FIELDS,
    TIME_RULES,
    AlertQuery,
    DeadLetter,
    StoredAlert,
    StoredCommand,
    StoredReading,
    entry_indexes,
    newest_positions,
    newest_signals,
)


class AuthResult(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such vehicle or wrong token: indistinguishable on purpose
    REVOKED = "revoked"


def command_id_floor(now_ms: int) -> int:
    """The smallest id a command stored now may get: ids grow with the clock (about 1000 per
    ms), and a store also keeps them above every id it holds, so none is ever reused."""
    return now_ms * 1000


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


def sql_dir() -> Path:
    """Where the versioned migrations live: $FLEET_SQL_DIR, the source tree, or the package."""
    env = os.environ.get("FLEET_SQL_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "sql",
                   Path("/usr/share/fleet-backend/sql")]  # the fleet-backend package's
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError("no sql/ migrations directory found (set FLEET_SQL_DIR)")


def sqlite_path(url: str) -> str | None:
    """The file of an embedded-store URL (`sqlite:///path/file.db` or a bare path), else None."""
    if url.startswith(("postgres://", "postgresql://")):
        return None
    return url.removeprefix("sqlite://") if url.startswith("sqlite://") else url


# Migration files renamed when both dialects took one number per concern (sql/README.md): a
# database records the names it applied, so `migrate` renames a database's old names first.
RENAMED_MIGRATIONS = {
    "sqlite": {"0008_maintenance": "0008_service"},
    "postgres": {"0002_commands": "0003_commands", "0003_accounts": "0004_accounts",
                 "0004_alerts": "0005_alerts", "0005_geofences": "0006_geofences",
                 "0006_timescale_retention": "0007_partitions",
                 "0007_maintenance": "0008_service", "0008_quantity_names": "0009_quantity_names"},
}


def migration_renames(dialect: str, done: set[str]) -> list[tuple[str, str]]:
    """(old, new) for each old name in `done`, the highest first (a rename never lands on a
    name the database still holds)."""
    renamed = RENAMED_MIGRATIONS.get(dialect, {})
    return [(old, renamed[old]) for old in sorted(done & renamed.keys(), reverse=True)]


def pending_migrations(dialect: str, done: set[str]) -> list[Path]:
    """The migration files of `dialect` (sql/<dialect>/NNNN_name.sql) not in `done`, in order."""
    return [f for f in sorted((sql_dir() / dialect).glob("*.sql")) if f.stem not in done]
