"""The store interface the gateway, writer, hub and queries depend on, and the pieces every
store shares (which migrations are pending, tokens, `now_ms`; the values it stores are in
`rows`). It imports no store: the registry in `backend.store` picks one by URL."""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Protocol

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


def now_ms() -> int:
    """The wall clock in ms since 1970 (store timestamps)."""
    return time.time_ns() // 1_000_000


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
    candidates += [Path(__file__).resolve().parents[2] / "sql", Path("/usr/share/fleet-agent/sql")]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError("no sql/ migrations directory found (set FLEET_SQL_DIR)")


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def migrate(self) -> list[str]: ...
    async def write(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        """Store everything in one transaction; already-stored (vehicle, epoch, seq) are no-ops."""
    async def add_vehicle(self, vehicle_id: str) -> str: ...
    async def revoke_vehicle(self, vehicle_id: str) -> bool: ...
    async def list_vehicles(self) -> list[dict]: ...
    async def authenticate(self, vehicle_id: str, token: str) -> AuthResult: ...
    async def revoked_vehicles(self) -> set[str]: ...
    async def last_positions(self) -> list[dict]: ...
    async def route(self, vehicle_id: str, start_ms: int, end_ms: int,
                    step_ms: int | None = None) -> list[dict]:
        """Positions in [start, end) ordered by (time, epoch, seq); with `step_ms` only the
        first of each `time_ms // step_ms` bucket."""
    async def geofence_entries(self, geofence_id: str, start_ms: int,
                               end_ms: int) -> list[dict]:
        """Outside→inside transitions in [start, end) in device-time order (queries.py)."""
    async def put_geofence(self, geofence_id: str, name: str, area: dict,
                           speed_limit_kmh: float | None = None, circle: dict | None = None,
                           create_only: bool = False) -> bool:
        """Create or replace (Polygon/MultiPolygon); True if created (store/*/geofences.py)."""
    async def geofences(self) -> list[dict]: ...
    async def geofence(self, geofence_id: str) -> dict | None: ...
    async def delete_geofence(self, geofence_id: str) -> bool: ...
    async def inside(self, geofence_id: str) -> list[dict] | None:
        """Last positions inside the geofence now; None if there is no such geofence."""
    async def vehicle_geofence_entries(self, vehicle_id: str, start_ms: int,
                                       end_ms: int) -> list[dict]: ...
    async def last_signals(self) -> dict[str, dict[str, dict]]: ...
    async def last_fixes(self) -> dict[str, dict]: ...
    async def vehicle_statuses(self) -> dict[str, dict]: ...
    async def commands_of(self, vehicle_id: str, limit: int) -> list[StoredCommand]:
        """The vehicle's commands, newest first."""
    async def dead_letters(self) -> list[dict]: ...
    async def add_command(self, vehicle_id: str, name: str, args: dict) -> int:
        """Store a new command; its id is above `command_id_floor(now)` and every stored id."""
    async def pending_commands(self, vehicle_id: str) -> list[StoredCommand]:
        """The vehicle's commands without an answer, oldest first."""
    async def commands_sent(self, ids: list[int], now_ms: int) -> None:
        """Count one more sending of each command and remember when (the gateway counts just
        before it sends, so an answered command always shows at least one)."""
    async def answer_command(self, vehicle_id: str, command_id: int, ok: bool, detail: str,
                             now_ms: int) -> bool:
        """Record the vehicle's first answer; False if unknown, another vehicle's or answered."""
    async def command(self, command_id: int) -> StoredCommand | None: ...
    async def save_vehicle_status(self, vehicle_id: str, status: dict, now_ms: int) -> None:
        """Keep the agent's latest status report (protocol.md §3 status), replacing the last."""
    # alerts (docs/alerts.md; backend/store/*/alerts.py)
    async def alert_readings(self, vehicle_id: str, after_ms: int | None) -> list[StoredReading]:
        """The vehicle's readings with time > after_ms (all if None) by (time, epoch, seq)."""
    async def alert_checkpoint(self, vehicle_id: str,
                               before_ms: int | None) -> tuple[int, dict] | None:
        """The newest evaluator checkpoint with time < before_ms (None: the newest)."""
    async def alerts_in_window(self, vehicle_id: str, after_ms: int | None) -> list[StoredAlert]:
        """Reading-driven alerts a re-evaluation from `after_ms` may change: open ones and
        those decided after it (all of the vehicle's if None)."""
    async def save_alerts(self, upserts: list, retract: list[tuple], now_ms: int,
                          checkpoints: tuple | None = None,
                          moves: list = ()) -> list[tuple[StoredAlert, bool]]:
        """One transaction: upsert episodes by key, give the alert of each `(old key, episode)`
        move the episode's key and values (a retracted row holding that key goes), mark
        `retract` keys retracted, and with `checkpoints = (vehicle, after_ms, [(time_ms,
        state)])` replace the vehicle's checkpoints after `after_ms`. Returns each changed
        alert and whether it is new."""
    async def save_alert_checkpoints(self, points: list[tuple[str, int, dict]]) -> None:
        """Checkpoints of many vehicles, (vehicle, time_ms, state) each, in one transaction."""
    async def prune_alert_checkpoints(self, before_ms: int) -> int:
        """Drop checkpoints older than `before_ms`, except each vehicle's newest."""
    async def list_alerts(self, query: AlertQuery) -> list[StoredAlert]: ...
    async def alert(self, alert_id: int) -> StoredAlert | None: ...
    async def ack_alert(self, alert_id: int, user: str, now_ms: int) -> StoredAlert | None:
        """Acknowledge once (a second ack keeps the first's user and time)."""
    async def count_readings(self, vehicle_id: str | None = None) -> int: ...
    async def maintain(self, now_ms: int | None = None) -> dict:
        """Partition upkeep (create ahead, drop past retention); a no-op where not needed."""
    def is_transient(self, exc: BaseException) -> bool:
        """True if the failure is the database's (retry later), False if the data's."""


def sqlite_path(url: str) -> str | None:
    """The file of an embedded-store URL (`sqlite:///path/file.db` or a bare path), else None."""
    if url.startswith(("postgres://", "postgresql://")):
        return None
    return url.removeprefix("sqlite://") if url.startswith("sqlite://") else url


def pending_migrations(dialect: str, done: set[str]) -> list[Path]:
    """The migration files of `dialect` (sql/<dialect>/NNNN_name.sql) not in `done`, in order."""
    return [f for f in sorted((sql_dir() / dialect).glob("*.sql")) if f.stem not in done]
