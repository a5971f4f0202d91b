"""Backend settings: command-line flags, optionally preset from a TOML file (`--config`)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class BackendConfig:
    db: str = "sqlite:///var/lib/fleet-backend/fleet.db"
    quic_host: str = "::"
    quic_port: int = 4433
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    cert: str = "/etc/fleet-backend/server.pem"
    key: str = "/etc/fleet-backend/server.key"
    writer_max_rows: int = 5000
    writer_linger_ms: int = 0

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def load_toml(path: str) -> dict:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    unknown = set(raw) - set(BackendConfig.keys())
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    return raw
