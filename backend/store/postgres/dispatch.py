"""Dispatch tables of the PostgreSQL store (sql/postgres/0012_dispatch.sql): catalogues, jobs,
routes, transitions; the same behaviour as backend/store/sqlite/dispatch.py. Ids are ordered
bytewise (COLLATE "C") like SQLite's, so pages are the same in both."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ...dispatch import codec
from ...dispatch.model import FleetVehicle, Job, JobRecord, JobState, Route, Transition
from ...dispatch.storage import (
    CATALOGUES,
    KIND_OF,
    MAX_JOBS_PAGE,
    TRANSITION_COLUMNS,
    JobExists,
    JobQuery,
    StaleState,
    StaleVersion,
    route_after,
    transition_from_row,
    transition_row,
)
from .db import PostgresDb

_JOB_COLUMNS = "body::text, state, route_id, updated_ms"


def _record(r) -> JobRecord:
    return JobRecord(codec.job_from_dict(json.loads(r[0])), JobState(r[1]), r[2], r[3])


def _route(text: str) -> Route:
    return codec.route_from_dict(json.loads(text))


def _body(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class PostgresDispatch(PostgresDb):
    """Mixed into PostgresStore (uses its asyncpg pool)."""

    # --- catalogues (vehicle types, drivers, depots) and dispatch vehicles ------------------

    async def put_catalogue(self, item, now_ms: int) -> bool:
        """Create or replace a vehicle type, driver or depot; True if it was created."""
        cat = CATALOGUES[KIND_OF[type(item)]]
        extra = ["account_id"] if cat.table == "drivers" else []
        cols = ", ".join(["id", "body", "updated_ms", *extra])
        marks = ", ".join(["$1", "$2::jsonb", "$3", *(f"${4 + i}" for i in range(len(extra)))])
        sets = ", ".join(f"{c} = excluded.{c}" for c in ["body", "updated_ms", *extra])
        args = [item.id, _body(cat.to_dict(item)), now_ms]
        if extra:
            args.append(item.account_id)
        return await self._pool.fetchval(
            f"INSERT INTO {cat.table} AS t ({cols}) VALUES ({marks}) "
            f"ON CONFLICT (id) DO UPDATE SET {sets} RETURNING (xmax = 0)", *args)

    async def catalogue(self, kind: str) -> list:
        cat = CATALOGUES[kind]
        rows = await self._pool.fetch(
            f'SELECT body::text FROM {cat.table} ORDER BY id COLLATE "C"')
        return [cat.from_dict(json.loads(r[0])) for r in rows]

    async def delete_catalogue(self, kind: str, item_id: str) -> bool:
        cat = CATALOGUES[kind]
        status = await self._pool.execute(f"DELETE FROM {cat.table} WHERE id = $1", item_id)
        return status != "DELETE 0"

    async def put_dispatch_vehicle(self, v: FleetVehicle, now_ms: int) -> None:
        await self._pool.execute(
            "INSERT INTO dispatch_vehicles (vehicle_id, type_id, depot_id, updated_ms) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (vehicle_id) DO UPDATE SET "
            "type_id = excluded.type_id, depot_id = excluded.depot_id, "
            "updated_ms = excluded.updated_ms", v.vehicle_id, v.type_id, v.depot_id, now_ms)

    async def dispatch_vehicles(self) -> list[FleetVehicle]:
        rows = await self._pool.fetch(
            'SELECT vehicle_id, type_id, depot_id FROM dispatch_vehicles '
            'ORDER BY vehicle_id COLLATE "C"')
        return [FleetVehicle(*r) for r in rows]

    # --- jobs -------------------------------------------------------------------------------

    async def add_jobs(self, jobs: list[Job], now_ms: int) -> list[str]:
        """As SqliteDispatch.add_jobs: all new jobs or none (JobExists)."""
        bodies = [(j.id, _body(codec.job_to_dict(j))) for j in jobs]
        async with self._pool.acquire() as conn, conn.transaction():
            # the same ids imported concurrently: the second waits for the first's rows
            await conn.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
            stored = {r[0]: r[1] for r in await conn.fetch(
                "SELECT id, body::text FROM jobs WHERE id = ANY($1::text[])",
                [jid for jid, _ in bodies])}
            # compare as JSON values: jsonb re-orders keys and spacing
            clash = [jid for jid, b in bodies
                     if jid in stored and json.loads(stored[jid]) != json.loads(b)]
            if clash:
                raise JobExists(clash)
            new = [(jid, b, now_ms, now_ms) for jid, b in bodies if jid not in stored]
            await conn.executemany(
                "INSERT INTO jobs (id, state, body, created_ms, updated_ms) "
                "VALUES ($1, 'unassigned', $2::jsonb, $3, $4)", new)
            return [n[0] for n in new]

    async def replace_job(self, job: Job, now_ms: int,
                          states: tuple[JobState, ...]) -> JobRecord | None:
        body = _body(codec.job_to_dict(job))
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE jobs SET body = $1::jsonb, updated_ms = $2 WHERE id = $3 AND "
                "state = ANY($4::text[]) AND body != $1::jsonb", body, now_ms, job.id,
                [s.value for s in states])
            r = await conn.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1", job.id)
            return None if r is None else _record(r)

    async def job(self, job_id: str) -> JobRecord | None:
        r = await self._pool.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
        return None if r is None else _record(r)

    async def jobs(self, q: JobQuery) -> list[JobRecord]:
        where, args = [], []

        def arg(v) -> str:
            args.append(v)
            return f"${len(args)}"

        if q.states:
            where.append(f"state = ANY({arg([s.value for s in q.states])}::text[])")
        if q.route_id is not None:
            where.append(f"route_id = {arg(q.route_id)}")
        if q.vehicles is not None:
            where.append(f"(route_id IS NULL OR route_id IN (SELECT id FROM routes WHERE "
                         f"vehicle_id = ANY({arg(sorted(q.vehicles))}::text[])))")
        if q.after is not None:
            where.append(f'id COLLATE "C" > {arg(q.after)}')
        sql = (f"SELECT {_JOB_COLUMNS} FROM jobs {'WHERE ' + ' AND '.join(where) if where else ''}"
               f' ORDER BY id COLLATE "C" LIMIT {arg(min(q.limit, MAX_JOBS_PAGE))}')
        return [_record(r) for r in await self._pool.fetch(sql, *args)]

    # --- transitions ------------------------------------------------------------------------

    async def _record_transitions(self, conn, ts: list[Transition]) -> list[Transition]:
        done = []
        for t in ts:
            if await conn.fetchval("SELECT 1 FROM job_transitions WHERE id = $1", t.id):
                continue  # recorded before: idempotent
            r = await conn.fetchrow("SELECT state, route_id FROM jobs WHERE id = $1 FOR UPDATE",
                                    t.job_id)
            if r is None or r[0] != t.from_state.value:
                raise StaleState(t.job_id, None if r is None else r[0])
            inserted = await conn.fetchval(
                f"INSERT INTO job_transitions ({TRANSITION_COLUMNS}) VALUES "
                f"({', '.join(f'${i}' for i in range(1, 14))}) ON CONFLICT (id) DO NOTHING "
                "RETURNING 1", *transition_row(t))
            if not inserted:  # recorded concurrently by another backend
                continue
            await conn.execute(
                "UPDATE jobs SET state = $1, route_id = $2, updated_ms = $3 WHERE id = $4",
                t.to_state.value, route_after(t, r[1]), t.recorded_ms, t.job_id)
            done.append(t)
        return done

    async def record_transitions(self, ts: list[Transition]) -> list[Transition]:
        """As SqliteDispatch.record_transitions."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._record_transitions(conn, ts)

    async def transitions(self, job_id: str) -> list[Transition]:
        rows = await self._pool.fetch(
            f"SELECT {TRANSITION_COLUMNS} FROM job_transitions WHERE job_id = $1 ORDER BY seq",
            job_id)
        return [transition_from_row(r) for r in rows]

    async def transitions_after(self, after_seq: int, limit: int) -> list[tuple[int, Transition]]:
        rows = await self._pool.fetch(
            f"SELECT seq, {TRANSITION_COLUMNS} FROM job_transitions WHERE seq > $1 "
            "ORDER BY seq LIMIT $2", after_seq, limit)
        return [(r[0], transition_from_row(tuple(r)[1:])) for r in rows]

    # --- routes -----------------------------------------------------------------------------

    async def put_dispatch_route(self, route: Route, base_version: int | None, now_ms: int,
                        transitions: Sequence[Transition] = ()) -> Route:
        """As SqliteDispatch.put_dispatch_route."""
        version = 1 if base_version is None else base_version + 1
        stored = codec.route_to_dict(route)
        stored["version"] = version
        body = _body(stored)
        async with self._pool.acquire() as conn, conn.transaction():
            # a new route id created twice at once: the second waits, then sees the first
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", route.id)
            r = await conn.fetchrow("SELECT version, body::text FROM routes WHERE id = $1 "
                                    "FOR UPDATE", route.id)
            if r is not None and r[0] == version and json.loads(r[1]) == stored:
                return _route(r[1])  # the same change again
            if (r[0] if r else None) != base_version:
                raise StaleVersion(route.id, r[0] if r else None)
            await conn.execute(
                "INSERT INTO routes (id, vehicle_id, status, version, shift_start_ms, "
                "shift_end_ms, body, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) "
                "ON CONFLICT (id) DO UPDATE SET vehicle_id = excluded.vehicle_id, "
                "status = excluded.status, version = excluded.version, "
                "shift_start_ms = excluded.shift_start_ms, "
                "shift_end_ms = excluded.shift_end_ms, body = excluded.body, "
                "updated_ms = excluded.updated_ms",
                route.id, route.vehicle_id, route.status.value, version, route.shift.start_ms,
                route.shift.end_ms, body, now_ms)
            await self._record_transitions(conn, list(transitions))
            return _route(body)

    async def dispatch_route(self, route_id: str) -> Route | None:
        r = await self._pool.fetchrow("SELECT body::text FROM routes WHERE id = $1", route_id)
        return None if r is None else _route(r[0])

    async def dispatch_routes(self, statuses: tuple[str, ...] = (),
                     vehicle_id: str | None = None) -> list[Route]:
        where: list[str] = []
        args: list[object] = []
        if statuses:
            args.append(list(statuses))
            where.append(f"status = ANY(${len(args)}::text[])")
        if vehicle_id is not None:
            args.append(vehicle_id)
            where.append(f"vehicle_id = ${len(args)}")
        sql = (f"SELECT body::text FROM routes "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} "
               'ORDER BY shift_start_ms, id COLLATE "C"')
        return [_route(r[0]) for r in await self._pool.fetch(sql, *args)]
