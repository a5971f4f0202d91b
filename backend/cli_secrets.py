"""Secrets on the command line: every local user sees a process's argv (`ps`, /proc), so
passwords and tokens come from files, the environment or stdin. Flags that still carry one
work, with a deprecation warning naming the way that keeps it out of argv (docs/operations.md).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from .natsconn import url_has_secret

log = logging.getLogger("backend.cli")


def db_url_has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def argv_secret_warnings(db: str | None, nats_url: str | None) -> list[str]:
    """Why the given flag values are deprecated (empty: none carries a secret)."""
    out = []
    if db and db_url_has_password(db):
        out.append("--db with a password is deprecated (it shows in ps): put the URL in the "
                   "--config file, or the password in PGPASSWORD or a ~/.pgpass file "
                   "(PGPASSFILE)")
    if nats_url and url_has_secret(nats_url):
        out.append("--nats-url with credentials is deprecated (it shows in ps): use "
                   "--nats-user with --nats-password-file, or --nats-token-file")
    return out


def warn_secrets_in_argv(args) -> None:
    for text in argv_secret_warnings(getattr(args, "db", None), getattr(args, "nats_url", None)):
        log.warning("deprecated: %s", text)
