"""Persistence: one `Store` interface (`protocols`, a Protocol per concern) and a registry of
its implementations (`sqlite/`, `postgres/`: the same module names, one per concern).

As python-can's `interfaces/`: the registry maps a URL scheme to the module and class of a
store, imported only when chosen, so the interface imports no implementation.
"""

from __future__ import annotations

import importlib

from .base import AuthResult, StoredReading, sqlite_path
from .protocols import Store

# scheme -> (module, class); a bare path or sqlite:/// is the embedded store
STORES = {
    "sqlite": ("backend.store.sqlite", "SqliteStore"),
    "postgresql": ("backend.store.postgres", "PostgresStore"),
}


def open_store(url: str) -> Store:
    """`sqlite:///path/file.db` (or a bare path) or `postgresql://…`."""
    path = sqlite_path(url)
    module, name = STORES["sqlite" if path is not None else "postgresql"]
    cls = getattr(importlib.import_module(module), name)
    return cls(path if path is not None else url)


__all__ = ["STORES", "AuthResult", "Store", "StoredReading", "open_store"]
