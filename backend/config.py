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
    # the QUIC library of the gateway (geostream/quic/: "aioquic" or "qh3"); empty:
    # $FLEET_QUIC_LIBRARY, else qh3 (geostream.quic.gateway_library_name says why)
    quic_library: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    cert: str = "/etc/fleet-backend/server.pem"
    key: str = "/etc/fleet-backend/server.key"
    writer_max_rows: int = 5000
    writer_linger_ms: int = 0
    # shortest time between two transactions' starts (backend/writer.py DEFAULT_INTERVAL_S):
    # the one-reading batches of 1 Hz vehicles share a commit; 0: each commit right after the last
    writer_interval_ms: int = 50
    # the sane window of a reading's device time (docs/protocol.md §4): readings before
    # `reading_min_time` (ISO date or date-time, UTC) or more than `reading_max_ahead_s` ahead
    # of the gateway's clock are dead-lettered, never a vehicle's position
    reading_min_time: str = "2000-01-01"
    reading_max_ahead_s: float = 24 * 3600
    # the gateway's TLS session tickets (docs/protocol.md §8); empty: TICKET_FILE_NAME next to
    # the embedded store's file, or in STATE_DIR with PostgreSQL
    ticket_file: str = ""
    # the `[alerts]` table: rules and their parameters (docs/alerts.md); TOML only, no flag
    alerts: dict = field(default_factory=dict)
    # the `[maintenance]` table: service intervals and signal-health checks
    # (docs/maintenance.md); TOML only
    maintenance: dict = field(default_factory=dict)
    # the `[driving]` table: harsh-driving thresholds per vehicle class (docs/driving.md)
    driving: dict = field(default_factory=dict)
    # the `[notify]` table: notifications, their channels and the egress guard's allowed
    # networks (docs/notifications.md); TOML only
    notify: dict = field(default_factory=dict)
    # how often the clock-driven alert rules (stale, offline) run
    alert_timer_s: float = 5.0

    # TLS on the HTTP listener (dashboard, API, WebSocket); empty: plain HTTP (docs/operations.md)
    http_cert: str = ""
    http_key: str = ""
    # browser sessions end after this long unused, and this long after login in any case (a
    # working day: a stolen cookie is good for hours, not for a week)
    session_idle_s: float = 8 * 3600
    session_max_s: float = 12 * 3600
    # reverse proxies whose X-Forwarded-For / -Proto are believed (addresses or CIDR networks)
    trusted_proxies: tuple[str, ...] = ()
    # Origins besides the dashboard's own allowed to open /ws with a session cookie
    allowed_origins: tuple[str, ...] = ()
    # the web app's basemap (backend/mapconfig.py): a MapLibre style URL, a local .pmtiles
    # archive, a GeoJSON overlay of roads; all empty: the offline Natural Earth map
    map_style: str = ""
    map_pmtiles: str = ""
    map_overlay: str = ""
    # dispatch planning (docs/planning.md): an OpenStreetMap extract (.osm.pbf) whose roads give
    # the travel times; empty: straight-line distance × a detour factor, said in every answer.
    # Its graph is built once and cached by the extract's hash in road_cache_dir (empty:
    # $XDG_CACHE_HOME/fleet-agent/roads).
    road_network: str = ""
    road_cache_dir: str = ""
    # how long a vehicle stays inside a stop before it has arrived (docs/dispatch.md): the
    # backend's detector and, through route.set, the vehicles' detectors use it
    arrival_dwell_s: float = 60.0
    # a gateway node behind `python -m backend router` (docs/scaling.md): its server id
    # (0..65535, -1: a single machine, no router) and the router's tunnel address HOST:PORT
    server_id: int = -1
    router: str = ""
    # the cluster's tunnel key (router and nodes; `python -m backend gen-cluster-key`), a file
    # of mode 0600 (docs/scaling.md §4); needed by a node and by the router
    cluster_key_file: str = ""
    # NATS for live fan-out between nodes (backend/fanout.py, docs/scaling.md §5), e.g.
    # nats://10.0.0.5:4222; empty: the gateway publishes straight into this process's hub
    # (several servers of a NATS cluster: comma-separated URLs)
    nats_url: str = ""
    # gateway processes sharing quic_port with SO_REUSEPORT, steered by the server id of each
    # datagram's connection ID (`--reuseport N`, backend/cluster/workers.py; docs/scaling.md
    # §4); 0 or 1: one process. More needs PostgreSQL (a writer per process) and NATS (every
    # process's dashboard sees every vehicle).
    reuseport: int = 0
    # NATS credentials (docs/scaling.md §5): a user with a password file, or a token file (files
    # of mode 0600, never on the command line), and TLS: the CA of nats-server's certificate
    # (or a tls:// URL and the system's CAs), a client certificate and key if it asks for one
    nats_user: str = ""
    nats_password_file: str = ""
    nats_token_file: str = ""
    nats_tls_ca: str = ""
    nats_tls_cert: str = ""
    nats_tls_key: str = ""
    # the bearer secret of GET /metrics (Prometheus `authorization: credentials`); empty: the
    # endpoint refuses everyone. Config file only (a flag would show in `ps`).
    metrics_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if (self.server_id >= 0) != bool(self.router):
            raise ValueError("server_id and router go together")
        if self.server_id > 65535:
            raise ValueError("server_id must be within 0..65535")
        if self.server_id >= 0 and not self.cluster_key_file:
            raise ValueError("a node behind a router needs cluster_key_file (the tunnel's key)")
        self.nats_settings()  # credentials that exclude each other fail at start
        self.alert_rules()  # a bad [alerts] table fails at start, naming the key
        self.maintenance_config()
        self.driving_config()
        self.notify_settings()
        if not 1 <= self.arrival_dwell_s <= 3600:
            raise ValueError("arrival_dwell_s must be within 1..3600")
        if not 0.1 <= self.alert_timer_s <= 3600:
            raise ValueError("alert_timer_s must be within 0.1..3600")
        self.check_reuseport()
        self.gateway_quic_library()  # unknown, or qh3 where CIDs are routed: fails at start
        self.time_window()  # a bad reading_min_time / reading_max_ahead_s fails at start

    def gateway_quic_library(self) -> str:
        """The gateway's QUIC library (geostream.quic.gateway_library_name): CIDs are routed
        by server id behind a router (`server_id`) and between `reuseport` workers; both
        route those without it too (relay.py: announced to the router, relayed between
        workers), so either library serves there."""
        from geostream.quic import gateway_library_name

        return gateway_library_name(self.quic_library or None,
                                    cid_routed=self.server_id >= 0 or self.reuseport > 1,
                                    relayed=True)

    def check_reuseport(self) -> None:
        """`reuseport` N > 1: what the N worker processes need, or ValueError saying why."""
        from .cluster.reuseport import MAX_GROUP

        if isinstance(self.reuseport, bool) or not isinstance(self.reuseport, int) \
                or not 0 <= self.reuseport <= MAX_GROUP:
            raise ValueError(f"reuseport must be within 0..{MAX_GROUP}")
        if self.reuseport <= 1:
            return
        if not self.db.startswith(("postgresql://", "postgres://")):
            # SQLite takes one writer process at a time: N writers would wait on each
            # other's locks instead of sharing the load
            raise ValueError("reuseport > 1 needs a postgresql:// db (SQLite allows one "
                             "writer process; run one gateway process on SQLite)")
        if not self.nats_url:
            raise ValueError("reuseport > 1 needs nats_url: each process's hub and dashboard "
                             "see the other processes' vehicles through NATS")
        if self.server_id >= 0:
            raise ValueError("reuseport and server_id/router exclude each other: the workers "
                             "take server ids 0..N-1 on this host")

    def time_window(self):
        """The gateway's sane window of reading times (geostream.schema.TimeWindow)."""
        from datetime import UTC, datetime

        from geostream.schema import TimeWindow

        try:
            start = datetime.fromisoformat(self.reading_min_time)
        except ValueError:
            raise ValueError("reading_min_time must be an ISO date or date-time, e.g. "
                             "2000-01-01") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if not 60 <= self.reading_max_ahead_s <= 366 * 86400:
            raise ValueError("reading_max_ahead_s must be within 60..31622400 (a leap year)")
        return TimeWindow(min_ms=int(start.timestamp() * 1000),
                          max_ahead_ms=int(self.reading_max_ahead_s * 1000))

    def alert_rules(self):
        from .alerts.rules import parse_rules

        return parse_rules(self.alerts)

    def maintenance_config(self):
        from .maintenance.config import parse_maintenance

        return parse_maintenance(self.maintenance)

    def driving_config(self):
        from .driving.thresholds import parse_driving

        return parse_driving(self.driving)

    def notify_settings(self):
        from .notify.settings import NotifySettings

        return NotifySettings.parse(self.notify)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def cluster_node(self):
        """The gateway's ClusterNode behind a router, or None on a single machine."""
        if self.server_id < 0:
            return None
        from .cluster.node import ClusterNode, parse_addr
        from .cluster.tunnel import load_key

        return ClusterNode(self.server_id, parse_addr(self.router),
                           load_key(self.cluster_key_file))

    def nats_settings(self):
        """The `NatsSettings` of `nats_url` and its credentials, or None without NATS."""
        from .natsconn import NatsSettings

        return NatsSettings.from_config(self)

    def ticket_path(self) -> str:
        """Where the gateway keeps its session tickets."""
        if self.ticket_file:
            return self.ticket_file
        if self.reuseport > 1:  # the workers share theirs in the database (cluster/tickets.py)
            return self.db
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
