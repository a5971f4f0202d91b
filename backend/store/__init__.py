"""Persistence: one `Store` interface, an embedded SQLite and a PostgreSQL implementation."""

from .base import AuthResult, Store, StoredReading, open_store

__all__ = ["AuthResult", "Store", "StoredReading", "open_store"]
