"""Agent configuration: one TOML file (default /etc/fleet-agent/agent.toml).

Each source package parses its own section (`agent.gps.config`, `agent.can.config`), so this
module only knows the daemon's own settings. docs/configuration.md lists every key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = "/etc/fleet-agent/agent.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int = 4433
    ca_file: str = ""
    server_name: str | None = None  # TLS name to verify; defaults to host
    # where the latest TLS session ticket is kept for resumption / 0-RTT (docs/protocol.md §8);
    # empty: "session-ticket.json" next to the journal
    ticket_file: str = ""
    # optional pinning: hex SHA-256 of the gateway certificate's public key (SubjectPublicKeyInfo,
    # DER); when set, the CA check must pass *and* the key must be one of these
    pin_sha256: tuple[str, ...] = ()
    # live pacing (docs/link.md): once the backlog is sent, at most one batch per interval;
    # 0 sends after every journal commit. Latency on the map against bytes on the air.
    send_interval_ms: int = 1000
    # the QUIC library of the link (geostream/quic/: "aioquic" or "qh3"); empty:
    # $FLEET_QUIC_LIBRARY, else the seam's default (docs/link.md, QUIC library)
    quic_library: str = ""


@dataclass(frozen=True)
class JournalConfig:
    path: str = "/var/lib/fleet-agent/journal.sqlite"
    # group commit: one fsync at most every commit_interval_ms or commit_max_readings readings
    commit_interval_ms: int = 200
    commit_max_readings: int = 2000
    # bounds (docs/journal.md): when full, old positions are thinned, then the oldest dropped
    max_mb: float = 256.0
    max_age_h: float = 168.0
    # readings held in RAM while the disk fails (ENOSPC, EIO, read-only)
    memory_readings: int = 20_000


# The cab server's port when [cab] names none: HTTPS, unprivileged (the agent is no root).
CAB_PORT = 8443
# Extra names in the cab certificate: a few mDNS or hotspot names, not a list of the world.
MAX_CAB_NAMES = 8


@dataclass(frozen=True)
class CabConfig:
    """[cab]: the driver app served to an in-cab tablet (docs/driver.md, agent/cab/)."""
    enabled: bool = False
    listen: str = ""  # the Wi-Fi interface's address; never a wildcard
    port: int = CAB_PORT
    names: tuple[str, ...] = ()  # more names for the certificate beside `listen`
    tls_dir: str = ""  # where the CA and server keys live; empty: the journal's directory


@dataclass(frozen=True)
class AgentConfig:
    vehicle_id: str
    token: str
    server: ServerConfig
    journal: JournalConfig = field(default_factory=JournalConfig)
    gps: dict[str, Any] = field(default_factory=dict)
    can: dict[str, Any] = field(default_factory=dict)
    # [log] level; [status] socket, prometheus_textfile, report_interval_s (agent/control.py)
    log: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    cab: CabConfig = field(default_factory=CabConfig)
    source_path: str = ""


def _require(table: dict, key: str, kind: type, where: str):
    if key not in table:
        raise ConfigError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key!r} must be {kind.__name__}")
    return value


def _section(raw: dict, name: str, where: str) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return value


def _non_negative_int(value, where: str) -> int:
    if type(value) is not int or value < 0:
        raise ConfigError(f"{where}: must be a whole number ≥ 0")
    return value


def _pins(value, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(
            isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdefABCDEF" for c in v)
            for v in values):
        raise ConfigError(f"{where} [server]: 'pin_sha256' must be 64-hex-digit SHA-256 values")
    return tuple(v.lower() for v in values)


def _quic_library(value, where: str) -> str:
    from geostream.quic import library_name

    if not isinstance(value, str):
        raise ConfigError(f"{where} [server]: 'quic_library' must be a string")
    if value:
        try:
            library_name(value)
        except ValueError as exc:
            raise ConfigError(f"{where} [server] quic_library: {exc}") from None
    return value


CAB_KEYS = frozenset({"enabled", "listen", "port", "names", "tls_dir"})


def _cab(table: dict, where: str, rel) -> CabConfig:
    """[cab], validated: off unless enabled, and then on one concrete address."""
    import ipaddress

    where = f"{where} [cab]"
    unknown = set(table) - CAB_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    enabled = table.get("enabled", False)
    if type(enabled) is not bool:
        raise ConfigError(f"{where}: 'enabled' must be true or false")
    listen = table.get("listen", "")
    if not isinstance(listen, str):
        raise ConfigError(f"{where}: 'listen' must be a string")
    if listen or enabled:
        try:
            address = ipaddress.ip_address(listen)
        except ValueError:
            raise ConfigError(f"{where}: 'listen' must be the IP address of the cab's "
                              f"network interface (got {listen!r})") from None
        if address.is_unspecified:
            raise ConfigError(f"{where}: 'listen' must be one interface's address, not "
                              f"{listen} (that would offer the app on every network)")
    port = table.get("port", CAB_PORT)
    if type(port) is not int or not 0 <= port <= 65535:
        raise ConfigError(f"{where}: 'port' must be a whole number from 0 (the kernel "
                          "picks one) to 65535")
    names = table.get("names", [])
    if not isinstance(names, list) or len(names) > MAX_CAB_NAMES or not all(
            isinstance(n, str) and 0 < len(n) <= 253 for n in names):
        raise ConfigError(f"{where}: 'names' must be at most {MAX_CAB_NAMES} host names")
    tls_dir = table.get("tls_dir", "")
    if not isinstance(tls_dir, str):
        raise ConfigError(f"{where}: 'tls_dir' must be a string")
    return CabConfig(enabled, listen, port, tuple(names), rel(tls_dir))


def parse_config(raw: dict, where: str = "<config>") -> AgentConfig:
    base = Path(where).parent if where != "<config>" else Path(".")

    def rel(p: str) -> str:
        return str(base / p) if p and not Path(p).is_absolute() else p

    vehicle = _section(raw, "vehicle", where)
    server = _section(raw, "server", where)
    journal = _section(raw, "journal", where)
    return AgentConfig(
        vehicle_id=_require(vehicle, "id", str, f"{where} [vehicle]"),
        token=_require(vehicle, "token", str, f"{where} [vehicle]"),
        server=ServerConfig(
            host=_require(server, "host", str, f"{where} [server]"),
            port=int(server.get("port", 4433)),
            ca_file=rel(_require(server, "ca_file", str, f"{where} [server]")),
            server_name=server.get("server_name"),
            ticket_file=rel(server.get("ticket_file", "")),
            pin_sha256=_pins(server.get("pin_sha256", []), where),
            send_interval_ms=_non_negative_int(server.get("send_interval_ms", 1000),
                                               f"{where} [server] send_interval_ms"),
            quic_library=_quic_library(server.get("quic_library", ""), where),
        ),
        journal=JournalConfig(
            path=rel(journal.get("path", JournalConfig.path)),
            commit_interval_ms=int(journal.get("commit_interval_ms", 200)),
            commit_max_readings=int(journal.get("commit_max_readings", 2000)),
            max_mb=float(journal.get("max_mb", JournalConfig.max_mb)),
            max_age_h=float(journal.get("max_age_h", JournalConfig.max_age_h)),
            memory_readings=int(journal.get("memory_readings", JournalConfig.memory_readings)),
        ),
        gps=_section(raw, "gps", where),
        can=_section(raw, "can", where),
        log=_section(raw, "log", where),
        status=_section(raw, "status", where),
        cab=_cab(_section(raw, "cab", where), where, rel),
        source_path=where,
    )


def load_config(path: str) -> AgentConfig:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_config(raw, path)
