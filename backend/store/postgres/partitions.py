"""Partition upkeep of the PostgreSQL store (sql/postgres/0001_init.sql's
`telemetry_ensure_partitions` and `telemetry_maintain`): daily range partitions made ahead
and dropped past retention (under TimescaleDB: chunks dropped with drop_chunks), the hourly
job that runs it, and the write path's guard that a batch's days have a partition."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg

from geostream.clock import wall_ms
from geostream.limits import TS_MAX_AHEAD_MS

from ..base import StoredReading
from .db import PostgresDb

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
# Partition job period: partitions are made days ahead, so hourly is plenty.
MAINTAIN_EVERY_S = 3600.0
# The past edge of the days a write may create a partition (or chunk) for is the retention (an
# older day would be dropped again at the next maintenance), but never nearer than what an
# agent's journal still delivers late: its default `[journal] max_age_h` (168 h,
# agent/config.py; a test ties the two). A truck parked for weeks drains readings that old.
LATE_DELIVERY_MS = 168 * 3600 * 1000
# The future edge: the gateway's default sane window (a day ahead of its clock) plus a day, so
# a reading the gateway accepts always finds its partition.
AHEAD_MS = TS_MAX_AHEAD_MS + DAY_MS


class OutsidePartitionWindow(ValueError):
    """A reading whose day lies outside the days a write may create a partition for: refused
    as data (not retried), so the writer sends it alone to the dead letter with this text."""


def _day(ms: int) -> int:
    return ms // DAY_MS


def partition_window(now_ms: int, retention_ms: int) -> tuple[int, int]:
    """[first, last] ms a write may create partitions for (module constants)."""
    return now_ms - max(retention_ms, LATE_DELIVERY_MS), now_ms + AHEAD_MS


class PostgresPartitions(PostgresDb):
    _job: asyncio.Task | None
    _days: set[int]  # UTC days known to have a partition (or a hypertable)
    _lock: asyncio.Lock

    def _init_partitions(self, maintain_every_s: float) -> None:
        self.maintain_every_s = maintain_every_s
        self._job = None
        self._days = set()
        self._lock = asyncio.Lock()

    def _start_partition_job(self) -> None:
        if self.maintain_every_s:
            self._job = asyncio.get_running_loop().create_task(self._maintenance_job(),
                                                               name="partition-job")

    async def _stop_partition_job(self) -> None:
        if self._job is not None:
            self._job.cancel()
            await asyncio.gather(self._job, return_exceptions=True)
            self._job = None

    async def _maintenance_job(self) -> None:
        while True:
            try:
                result = await self.maintain()
                if result["created"] or result["dropped"]:
                    log.info("partitions: %d created, dropped %s", result["created"],
                             result["dropped"])
            except Exception as exc:  # database away: the next round retries
                log.warning("partition maintenance failed: %s", exc)
            await asyncio.sleep(self.maintain_every_s)

    async def _ensure_partitions(self, conn: asyncpg.Connection,
                                 readings: list[StoredReading]) -> None:
        days = {r.time_ms // DAY_MS for r in readings} - self._days  # `_day`, inline: per row
        if not days:
            return
        async with self._lock:
            retention_ms = await conn.fetchval(
                "SELECT (extract(epoch FROM retention) * 1000)::bigint FROM telemetry_policy")
            first, last = partition_window(wall_ms(), retention_ms)
            for r in readings:  # whatever `ts` says, only a bounded window of days
                if _day(r.time_ms) in days and not first <= r.time_ms <= last:
                    raise OutsidePartitionWindow(
                        f"reading {r.vehicle_id}/{r.epoch}/{r.seq}: time {r.time_ms} ms is "
                        f"outside the stored window [{first}, {last}] (retention "
                        f"{retention_ms // DAY_MS} days, late delivery "
                        f"{LATE_DELIVERY_MS // DAY_MS} days, {AHEAD_MS // DAY_MS} days ahead)")
            for day in sorted(days):  # outages give few distinct days, usually one
                start = datetime.fromtimestamp(day * DAY_MS / 1000, UTC)
                await conn.execute("SELECT telemetry_ensure_partitions($1, $1)", start)
            self._days |= days

    async def maintain(self, now_ms: int | None = None) -> dict:
        """Create partitions ahead and drop those past retention (under Timescale: drop the
        chunks past retention with drop_chunks)."""
        now = datetime.fromtimestamp((now_ms or wall_ms()) / 1000, UTC)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM telemetry_maintain($1)", now)
        self._days.clear()
        return {"created": row["created"], "dropped": list(row["dropped"])}

    async def set_policy(self, retention_days: float | None = None,
                         premake_days: float | None = None) -> None:
        async with self._pool.acquire() as conn:
            if retention_days is not None:
                await conn.execute("UPDATE telemetry_policy SET retention = $1 * interval '1 day'",
                                   float(retention_days))
            if premake_days is not None:
                await conn.execute("UPDATE telemetry_policy SET premake = $1 * interval '1 day'",
                                   float(premake_days))

    async def partitions(self) -> list[str]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'vehicle_telemetry'::regclass ORDER BY 1")
        return [r[0] for r in rows]
