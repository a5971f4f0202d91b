"""Dispatch tables of the SQLite store (sql/sqlite/0012_dispatch.sql): catalogues, jobs,
routes, transitions. Every write is idempotent: repeating it changes nothing more."""

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
from .db import SqliteDb, transaction

_JOB_COLUMNS = "body, state, route_id, updated_ms"


def _record(r) -> JobRecord:
    return JobRecord(codec.job_from_dict(json.loads(r[0])), JobState(r[1]), r[2], r[3])


def _route(r) -> Route:
    return codec.route_from_dict(json.loads(r[0]))


def _body(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class SqliteDispatch(SqliteDb):
    """Mixed into SqliteStore: every call runs on the store's one worker thread."""

    # --- catalogues (vehicle types, drivers, depots) and dispatch vehicles ------------------

    async def put_catalogue(self, item, now_ms: int) -> bool:
        """Create or replace a vehicle type, driver or depot; True if it was created."""
        cat = CATALOGUES[KIND_OF[type(item)]]
        body = _body(cat.to_dict(item))
        extra = {"account_id": item.account_id} if cat.table == "drivers" else {}
        cols = ", ".join(["id", "body", "updated_ms", *extra])
        marks = ", ".join("?" * (3 + len(extra)))
        sets = ", ".join(f"{c} = excluded.{c}" for c in ["body", "updated_ms", *extra])

        def run():
            with transaction(self._db) as db:
                existed = db.execute(f"SELECT 1 FROM {cat.table} WHERE id = ?",
                                     (item.id,)).fetchone() is not None
                db.execute(f"INSERT INTO {cat.table} ({cols}) VALUES ({marks}) "
                           f"ON CONFLICT (id) DO UPDATE SET {sets}",
                           (item.id, body, now_ms, *extra.values()))
                return not existed

        return await self._run(run)

    async def catalogue(self, kind: str) -> list:
        cat = CATALOGUES[kind]

        def rows():
            return [cat.from_dict(json.loads(r[0])) for r in self._db.execute(
                f"SELECT body FROM {cat.table} ORDER BY id")]

        return await self._run(rows)

    async def delete_catalogue(self, kind: str, item_id: str) -> bool:
        cat = CATALOGUES[kind]

        def run():
            return self._db.execute(f"DELETE FROM {cat.table} WHERE id = ?",
                                    (item_id,)).rowcount > 0

        return await self._run(run)

    async def put_dispatch_vehicle(self, v: FleetVehicle, now_ms: int) -> None:
        def run():
            self._db.execute(
                "INSERT INTO dispatch_vehicles (vehicle_id, type_id, depot_id, updated_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (vehicle_id) DO UPDATE SET "
                "type_id = excluded.type_id, depot_id = excluded.depot_id, "
                "updated_ms = excluded.updated_ms", (v.vehicle_id, v.type_id, v.depot_id, now_ms))

        await self._run(run)

    async def dispatch_vehicles(self) -> list[FleetVehicle]:
        def rows():
            return [FleetVehicle(*r) for r in self._db.execute(
                "SELECT vehicle_id, type_id, depot_id FROM dispatch_vehicles ORDER BY vehicle_id")]

        return await self._run(rows)

    # --- jobs -------------------------------------------------------------------------------

    async def add_jobs(self, jobs: list[Job], now_ms: int) -> list[str]:
        """Store new jobs (unassigned) in one transaction; a job stored before with the same
        contents is left as it is (a repeated import). Raises JobExists, storing nothing, if
        any id exists with other contents. Returns the ids that were new."""
        bodies = [(j.id, _body(codec.job_to_dict(j))) for j in jobs]

        def run():
            with transaction(self._db) as db:
                stored: dict[str, str] = {}
                for i in range(0, len(bodies), 500):
                    chunk = [jid for jid, _ in bodies[i:i + 500]]
                    stored.update(db.execute(
                        f"SELECT id, body FROM jobs WHERE id IN ({','.join('?' * len(chunk))})",
                        chunk).fetchall())
                clash = [jid for jid, b in bodies if jid in stored and stored[jid] != b]
                if clash:
                    raise JobExists(clash)
                new = [(jid, b, now_ms, now_ms) for jid, b in bodies if jid not in stored]
                db.executemany("INSERT INTO jobs (id, state, body, created_ms, updated_ms) "
                               "VALUES (?, 'unassigned', ?, ?, ?)", new)
                return [n[0] for n in new]

        return await self._run(run)

    async def replace_job(self, job: Job, now_ms: int,
                          states: tuple[JobState, ...]) -> JobRecord | None:
        """Replace a job's contents if its state is one of `states`; returns the stored
        record (unchanged if its state was another), None if there is no such job."""
        body = _body(codec.job_to_dict(job))
        allowed = [s.value for s in states]

        def run():
            with transaction(self._db) as db:
                db.execute(f"UPDATE jobs SET body = ?, updated_ms = ? WHERE id = ? AND state IN "
                           f"({','.join('?' * len(allowed))}) AND body != ?",
                           (body, now_ms, job.id, *allowed, body))
                r = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                               (job.id,)).fetchone()
                return None if r is None else _record(r)

        return await self._run(run)

    async def job(self, job_id: str) -> JobRecord | None:
        def row():
            r = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                                 (job_id,)).fetchone()
            return None if r is None else _record(r)

        return await self._run(row)

    async def jobs(self, q: JobQuery) -> list[JobRecord]:
        where, args = [], []
        if q.states:
            where.append(f"state IN ({','.join('?' * len(q.states))})")
            args += [s.value for s in q.states]
        if q.route_id is not None:
            where.append("route_id = ?")
            args.append(q.route_id)
        if q.vehicles is not None:
            where.append("(route_id IS NULL OR route_id IN (SELECT id FROM routes WHERE "
                         "vehicle_id IN (SELECT value FROM json_each(?))))")
            args.append(json.dumps(sorted(q.vehicles)))
        if q.after is not None:
            where.append("id > ?")
            args.append(q.after)
        sql = (f"SELECT {_JOB_COLUMNS} FROM jobs {'WHERE ' + ' AND '.join(where) if where else ''}"
               " ORDER BY id LIMIT ?")

        def rows():
            return [_record(r) for r in self._db.execute(
                sql, (*args, min(q.limit, MAX_JOBS_PAGE)))]

        return await self._run(rows)

    # --- transitions ------------------------------------------------------------------------

    def _record_transitions(self, db, ts: list[Transition]) -> list[Transition]:
        done = []
        for t in ts:
            if db.execute("SELECT 1 FROM job_transitions WHERE id = ?", (t.id,)).fetchone():
                continue  # recorded before: idempotent
            r = db.execute("SELECT state, route_id FROM jobs WHERE id = ?",
                           (t.job_id,)).fetchone()
            if r is None or r[0] != t.from_state.value:
                raise StaleState(t.job_id, None if r is None else r[0])
            db.execute(f"INSERT INTO job_transitions ({TRANSITION_COLUMNS}) "
                       f"VALUES ({','.join('?' * 13)})", transition_row(t))
            db.execute("UPDATE jobs SET state = ?, route_id = ?, updated_ms = ? WHERE id = ?",
                       (t.to_state.value, route_after(t, r[1]), t.recorded_ms, t.job_id))
            done.append(t)
        return done

    async def record_transitions(self, ts: list[Transition]) -> list[Transition]:
        """Record transitions in order, in one transaction, moving each job to its new state;
        ids recorded before are skipped. Raises StaleState (recording none) if a transition
        does not start from its job's stored state. Returns those newly recorded."""
        def run():
            with transaction(self._db) as db:
                return self._record_transitions(db, ts)

        return await self._run(run)

    async def transitions(self, job_id: str) -> list[Transition]:
        def rows():
            return [transition_from_row(r) for r in self._db.execute(
                f"SELECT {TRANSITION_COLUMNS} FROM job_transitions WHERE job_id = ? "
                "ORDER BY seq", (job_id,))]

        return await self._run(rows)

    async def transitions_after(self, after_seq: int, limit: int) -> list[tuple[int, Transition]]:
        def rows():
            return [(r[0], transition_from_row(r[1:])) for r in self._db.execute(
                f"SELECT seq, {TRANSITION_COLUMNS} FROM job_transitions WHERE seq > ? "
                "ORDER BY seq LIMIT ?", (after_seq, limit))]

        return await self._read(rows)

    # --- routes -----------------------------------------------------------------------------

    async def put_dispatch_route(self, route: Route, base_version: int | None, now_ms: int,
                        transitions: Sequence[Transition] = ()) -> Route:
        """Store a route at version `base_version + 1` (1 for a new one, `base_version`
        None) together with its jobs' transitions, in one transaction. Raises StaleVersion if
        the stored version is not `base_version` (a repeat of the same change is answered with
        the stored route), StaleState as record_transitions."""
        version = 1 if base_version is None else base_version + 1
        stored = codec.route_to_dict(route)
        stored["version"] = version
        body = _body(stored)

        def run():
            with transaction(self._db) as db:
                r = db.execute("SELECT version, body FROM routes WHERE id = ?",
                               (route.id,)).fetchone()
                if r is not None and r[0] == version and r[1] == body:
                    return _route((r[1],))  # the same change again
                if (r[0] if r else None) != base_version:
                    raise StaleVersion(route.id, r[0] if r else None)
                db.execute(
                    "INSERT INTO routes (id, vehicle_id, status, version, shift_start_ms, "
                    "shift_end_ms, body, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET vehicle_id = excluded.vehicle_id, "
                    "status = excluded.status, version = excluded.version, "
                    "shift_start_ms = excluded.shift_start_ms, "
                    "shift_end_ms = excluded.shift_end_ms, body = excluded.body, "
                    "updated_ms = excluded.updated_ms",
                    (route.id, route.vehicle_id, route.status.value, version,
                     route.shift.start_ms, route.shift.end_ms, body, now_ms))
                self._record_transitions(db, list(transitions))
                return _route((body,))

        return await self._run(run)

    async def dispatch_route(self, route_id: str) -> Route | None:
        def row():
            r = self._db.execute("SELECT body FROM routes WHERE id = ?", (route_id,)).fetchone()
            return None if r is None else _route(r)

        return await self._run(row)

    async def dispatch_routes(self, statuses: tuple[str, ...] = (),
                     vehicle_id: str | None = None) -> list[Route]:
        where, args = [], []
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += list(statuses)
        if vehicle_id is not None:
            where.append("vehicle_id = ?")
            args.append(vehicle_id)
        sql = (f"SELECT body FROM routes {'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY shift_start_ms, id")

        def rows():
            return [_route(r) for r in self._db.execute(sql, args)]

        return await self._run(rows)
