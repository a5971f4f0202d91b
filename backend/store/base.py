"""The store interface the gateway, writer, hub and queries depend on, and the pieces every
store shares (command rows, the newest position and signals of a batch, which migrations are
pending, `now_ms`). It imports no store: the registry in `backend.store` picks one by URL."""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from geostream import schema


class AuthResult(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such vehicle or wrong token: indistinguishable on purpose
    REVOKED = "revoked"


# the scalar columns of a stored reading, in the order the stores select them
ROW_FIELDS = ("vehicle_id", "epoch", "seq", "time_ms", "kind", "lat", "lon", "alt_m",
              "speed_kmh", "course_deg", "fix", "sats", "hdop")


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One reading as persisted: the wire reading flattened into columns."""

    vehicle_id: str
    epoch: int
    seq: int
    time_ms: int
    kind: str
    lat: float | None = None
    lon: float | None = None
    alt_m: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    fix: int | None = None
    sats: int | None = None
    hdop: float | None = None
    data: dict | None = None
    received_ms: int = 0

    @classmethod
    def from_wire(cls, vehicle_id: str, epoch: int, r: dict[str, Any],
                  received_ms: int) -> StoredReading:
        return cls(vehicle_id=vehicle_id, epoch=epoch, seq=r[schema.SEQ],
                   time_ms=r[schema.TIME], kind=r[schema.KIND], **schema.row_fields(r),
                   received_ms=received_ms)

    @classmethod
    def from_row(cls, r) -> StoredReading:
        """From a row of ROW_FIELDS, then the data JSON and received_ms."""
        return cls(**dict(zip(ROW_FIELDS, r[:13], strict=True)),
                   data=None if r[13] is None else json.loads(r[13]), received_ms=r[14])

    def data_json(self) -> str | None:
        return None if self.data is None else json.dumps(self.data, separators=(",", ":"),
                                                         default=str)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    vehicle_id: str
    epoch: int
    seq: int
    reading: dict
    error: str
    received_ms: int


@dataclass(frozen=True, slots=True)
class StoredCommand:
    """A downlink command (docs/protocol.md §3) and what became of it."""

    id: int
    vehicle_id: str
    name: str
    args: dict
    created_ms: int
    sent_count: int = 0
    last_sent_ms: int | None = None
    answered_ms: int | None = None
    ok: bool | None = None
    detail: str | None = None

    @classmethod
    def from_row(cls, r) -> StoredCommand:
        """From a row of (id, vehicle_id, name, args JSON, created_ms, sent_count,
        last_sent_ms, answered_ms, ok, detail); `ok` may come as 0/1 (SQLite)."""
        return cls(id=r[0], vehicle_id=r[1], name=r[2], args=json.loads(r[3]), created_ms=r[4],
                   sent_count=r[5], last_sent_ms=r[6], answered_ms=r[7],
                   ok=None if r[8] is None else bool(r[8]), detail=r[9])

    def as_json(self) -> dict:
        """The REST answer of GET /api/commands/{id}."""
        return {"state": "pending" if self.answered_ms is None else "answered",
                "id": self.id, "vehicle": self.vehicle_id, "name": self.name, "args": self.args,
                "created_ms": self.created_ms, "sent_count": self.sent_count,
                "last_sent_ms": self.last_sent_ms, "answered_ms": self.answered_ms,
                "ok": self.ok, "detail": self.detail}


def entry_indexes(inside: list[bool], first: int) -> list[int]:
    """Indexes i >= `first` where a time-ordered track goes from outside to inside."""
    return [i for i in range(max(first, 1), len(inside)) if inside[i] and not inside[i - 1]]


def now_ms() -> int:
    """The wall clock in ms since 1970 (store timestamps)."""
    return time.time_ns() // 1_000_000


def newest_positions(readings: list[StoredReading]) -> dict[str, StoredReading]:
    """{vehicle: its newest position in a batch} (a later device time wins)."""
    out: dict[str, StoredReading] = {}
    for r in readings:
        if r.kind == "pos" and (r.vehicle_id not in out or r.time_ms > out[r.vehicle_id].time_ms):
            out[r.vehicle_id] = r
    return out


def newest_signals(readings: list[StoredReading]) -> dict[tuple[str, str], tuple[Any, int]]:
    """{(vehicle, signal): (value, time_ms)}: each CAN signal's newest value in a batch."""
    out: dict[tuple[str, str], tuple[Any, int]] = {}
    for r in readings:
        if r.kind != "can" or not isinstance(r.data, dict):
            continue
        for name, value in r.data.items():
            key = (r.vehicle_id, name)
            if name != "bus" and (key not in out or r.time_ms > out[key][1]):
                out[key] = (value, r.time_ms)
    return out


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as stored (docs/alerts.md); `(rule, vehicle_id, subject, start_ms)` is unique."""

    id: int
    rule: str
    vehicle_id: str
    subject: str
    start_ms: int
    end_ms: int | None
    peak: float | None
    state: str  # open | closed | retracted (a backfill showed it did not happen)
    lat: float | None
    lon: float | None
    detail: dict
    decided_ms: int
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.rule, self.vehicle_id, self.subject, self.start_ms)

    def as_json(self) -> dict:
        """The REST and hub shape (docs/alerts.md, GET /api/alerts)."""
        return {"id": self.id, "rule": self.rule, "vehicle": self.vehicle_id,
                "subject": self.subject or None, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "peak": self.peak, "state": self.state,
                "acknowledged_by": self.acknowledged_by,
                "acknowledged_ms": self.acknowledged_ms, "lat": self.lat, "lon": self.lon,
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters of GET /api/alerts; None means "any". Newest start first, at most `limit`."""

    vehicle: str | None = None
    vehicles: frozenset[str] | None = None  # only these (a principal's groups); None: all
    rule: str | None = None
    state: str | None = None  # None: open and closed (never retracted unless asked)
    acknowledged: bool | None = None
    from_ms: int | None = None  # alerts that overlap [from_ms, to_ms)
    to_ms: int | None = None
    limit: int = 100


# Rules driven by the clock rather than by readings: kept out of re-evaluation windows.
TIME_RULES = ("stale", "offline", "service", "signal_health")


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
        """Create or replace (Polygon/MultiPolygon); True if created (store/*_api.py)."""
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
    # alerts (docs/alerts.md; backend/store/*_alerts.py)
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
