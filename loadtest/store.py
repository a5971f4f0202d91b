"""The load test's throw-away store (SQLite file, PostgreSQL / TimescaleDB server from
tests/pgfixture.py, or a given URL), its credentials, and the independent check of what it
holds (plain SQL, not the Store API under test). The throw-away servers need the source tree
(the load tester is not shipped in any package)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backend.store import open_store

# Server settings for PostgreSQL runs: durable, as in production and bench/bench_store.py.
PG_DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
              "shared_buffers": "256MB", "max_wal_size": "2GB"}
# Vehicles provisioned concurrently at a time.
PROVISION_CHUNK = 500


class ThrowawayStore:
    """The throw-away store of one run and its independent check (SQL, not the Store API)."""

    def __init__(self, kind: str, tmp: Path):
        self.kind = kind
        self.server = None
        if kind == "sqlite":
            self.url = f"sqlite://{tmp / 'fleet.db'}"
        elif kind in ("postgres", "timescale"):
            from tests.pgfixture import PgServer  # the source tree's throw-away server

            self.server = PgServer(dict(PG_DURABLE), timescale=kind == "timescale").start()
            self.url = self.server.create_database("fleet")
        else:
            self.url = kind

    async def provision(self, ids: list[str]) -> dict[str, str]:
        store = open_store(self.url)
        await store.open()
        tokens: dict[str, str] = {}
        try:
            for i in range(0, len(ids), PROVISION_CHUNK):
                chunk = ids[i:i + PROVISION_CHUNK]
                for vid, tok in zip(chunk, await asyncio.gather(
                        *(store.add_vehicle(v) for v in chunk)), strict=True):
                    tokens[vid] = tok
        finally:
            await store.close()
        return tokens

    def counts(self, prefix: str) -> dict[str, tuple[int, int, int]]:
        """vehicle → (rows, distinct seq, max seq) for the load test's vehicles."""
        sql = ("SELECT vehicle_id, count(*), count(DISTINCT seq), max(seq) FROM vehicle_telemetry "
               "WHERE vehicle_id LIKE {} GROUP BY vehicle_id")
        if self.url.startswith("sqlite://"):
            import sqlite3

            with sqlite3.connect(self.url.removeprefix("sqlite://"), timeout=30) as db:
                rows = db.execute(sql.format("?"), (prefix + "%",)).fetchall()
        else:
            async def fetch():
                conn = await _connect(self.url)
                try:
                    return await conn.fetch(sql.format("$1"), prefix + "%")
                finally:
                    await conn.close()

            rows = asyncio.run(fetch())
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def seqs(self, vehicles: list[str]) -> dict[str, set[int]]:
        """The stored sequence numbers of a few vehicles (those with readings unacknowledged)."""
        if not vehicles:
            return {}
        out: dict[str, set[int]] = {v: set() for v in vehicles}
        if self.url.startswith("sqlite://"):
            import sqlite3

            with sqlite3.connect(self.url.removeprefix("sqlite://"), timeout=30) as db:
                for v in vehicles:
                    out[v] = {r[0] for r in db.execute(
                        "SELECT seq FROM vehicle_telemetry WHERE vehicle_id = ?", (v,))}
            return out
        async def fetch():
            conn = await _connect(self.url)
            try:
                return await conn.fetch("SELECT vehicle_id, seq FROM vehicle_telemetry "
                                        "WHERE vehicle_id = ANY($1::text[])", vehicles)
            finally:
                await conn.close()

        for r in asyncio.run(fetch()):
            out[r[0]].add(r[1])
        return out

    def server_pid(self) -> int | None:
        """The throw-away PostgreSQL server's postmaster (its backends are its children);
        None for SQLite (inside the gateway) or a given URL."""
        if self.server is None:
            return None
        return int((self.server.data / "postmaster.pid").read_text().split()[0])

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def _connect(url: str):
    """One connection for the check, through a pooler too (`pool_mode=…` in the URL)."""
    from backend.store.postgres.db import connect

    return await connect(url)
