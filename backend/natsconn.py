"""How every backend process connects to NATS (docs/scaling.md §5, §9): the server URL, the
credentials (a password or a token read from a file, never from the command line) and TLS.

`NatsSettings.connect_options()` is pure (files read, nothing dialled); `connect()` is the one
edge that dials, used by the fan-out, the routers' health and the DNS responder.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from geostream.secretfile import read_private

# Reconnect quickly: a NATS restart should cost the map a second or two, not a minute.
RECONNECT_WAIT_S = 0.5
CONNECT_TIMEOUT_S = 2.0


def url_has_secret(url: str) -> bool:
    """Whether a NATS URL carries credentials (user:password@ or token@): such a URL on the
    command line shows in `ps` to every local user."""
    try:  # each server of a comma-separated cluster list
        return any("@" in urlsplit(u.strip()).netloc for u in url.split(","))
    except ValueError:
        return False


def _secret(path: str, what: str) -> str:
    value = read_private(path).decode("utf-8").strip()
    if not value or "\n" in value:
        raise ValueError(f"{path}: expected the NATS {what} on one line")
    return value


@dataclass(frozen=True)
class NatsSettings:
    url: str
    user: str = ""
    password_file: str = field(default="", repr=False)
    token_file: str = field(default="", repr=False)
    # TLS: the CA that signed nats-server's certificate (a tls:// URL without it: the system's
    # CAs), and a client certificate and key if the server verifies clients
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    def __post_init__(self) -> None:
        if self.password_file and self.token_file:
            raise ValueError("nats_password_file and nats_token_file exclude each other")
        if bool(self.user) != bool(self.password_file):
            raise ValueError("nats_user and nats_password_file go together")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("nats_tls_cert and nats_tls_key go together")

    @classmethod
    def from_config(cls, config) -> NatsSettings | None:
        """From a `BackendConfig`; None without `nats_url`."""
        if not config.nats_url:
            return None
        return cls(config.nats_url, config.nats_user, config.nats_password_file,
                   config.nats_token_file, config.nats_tls_ca, config.nats_tls_cert,
                   config.nats_tls_key)

    def tls_wanted(self) -> bool:
        return bool(self.tls_ca or self.tls_cert) or self.url.startswith("tls://")

    def connect_options(self) -> dict:
        """Keyword arguments for `nats.connect` (credentials read from their files now)."""
        # several servers of a NATS cluster, comma-separated: the client starts with any that
        # answers and moves to another when its server goes (it also learns the cluster's
        # other servers from the one it reached)
        options: dict = {"servers": [u.strip() for u in self.url.split(",") if u.strip()]}
        if self.password_file:
            options["user"] = self.user
            options["password"] = _secret(self.password_file, "password")
        elif self.token_file:
            options["token"] = _secret(self.token_file, "token")
        if self.tls_wanted():
            context = ssl.create_default_context(cafile=self.tls_ca or None)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            options["tls"] = context
        return options


async def connect(settings: NatsSettings, name: str, **callbacks):
    """A reconnecting nats-py client (`callbacks`: nats.connect's keyword arguments)."""
    import nats

    return await nats.connect(
        **settings.connect_options(), allow_reconnect=True, max_reconnect_attempts=-1,
        reconnect_time_wait=RECONNECT_WAIT_S, connect_timeout=CONNECT_TIMEOUT_S, name=name,
        **callbacks)
