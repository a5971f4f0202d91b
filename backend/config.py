"""Backend settings: command-line flags, optionally preset from a TOML file (`--config`)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields

from .store.base import sqlite_path

# The backend's own state (systemd StateDirectory=fleet-backend), also the embedded store's home.
STATE_DIR = "/var/lib/fleet-backend"
TICKET_FILE_NAME = "gateway-tickets.sqlite"


@dataclass(frozen=True)
class BackendConfig:
    db: str = f"sqlite://{STATE_DIR}/fleet.db"
    quic_host: str = "::"
    quic_port: int = 4433
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    cert: str = "/etc/fleet-backend/server.pem"
    key: str = "/etc/fleet-backend/server.key"
    writer_max_rows: int = 5000
    writer_linger_ms: int = 0
    # the gateway's TLS session tickets (docs/protocol.md §8); empty: TICKET_FILE_NAME next to
    # the embedded store's file, or in STATE_DIR with PostgreSQL
    ticket_file: str = ""
    # the `[alerts]` table: rules and their parameters (docs/alerts.md); TOML only, no flag
    alerts: dict = field(default_factory=dict)
    # how often the clock-driven alert rules (stale, offline) run
    alert_timer_s: float = 5.0

    # TLS on the HTTP listener (dashboard, API, WebSocket); empty: plain HTTP (docs/operations.md)
    http_cert: str = ""
    http_key: str = ""
    # browser sessions end after this long unused, and this long after login in any case
    session_idle_s: float = 8 * 3600
    session_max_s: float = 7 * 24 * 3600
    # reverse proxies whose X-Forwarded-For / -Proto are believed (addresses or CIDR networks)
    trusted_proxies: tuple[str, ...] = ()
    # Origins besides the dashboard's own allowed to open /ws with a session cookie
    allowed_origins: tuple[str, ...] = ()
    # the web app's basemap (backend/mapconfig.py): a MapLibre style URL, a local .pmtiles
    # archive, a GeoJSON overlay of roads; all empty: the offline Natural Earth map
    map_style: str = ""
    map_pmtiles: str = ""
    map_overlay: str = ""
    # the bearer secret of GET /metrics (Prometheus `authorization: credentials`); empty: the
    # endpoint refuses everyone. Config file only (a flag would show in `ps`).
    metrics_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.alert_rules()  # a bad [alerts] table fails at start, naming the key
        if not 0.1 <= self.alert_timer_s <= 3600:
            raise ValueError("alert_timer_s must be within 0.1..3600")

    def alert_rules(self):
        from .alerts.rules import parse_rules

        return parse_rules(self.alerts)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def ticket_path(self) -> str:
        """Where the gateway keeps its session tickets."""
        if self.ticket_file:
            return self.ticket_file
        db_file = sqlite_path(self.db)
        parent = os.path.dirname(db_file) if db_file and db_file != ":memory:" else STATE_DIR
        return os.path.join(parent or ".", TICKET_FILE_NAME)


def load_toml(path: str) -> dict:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    unknown = set(raw) - set(BackendConfig.keys())
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    return raw
