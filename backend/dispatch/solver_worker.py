"""The planner's own process: plans are solved there, one at a time, never in the gateway's.

`SolverWorker` (the asyncio edge) owns one long-lived child process (spawned, niced, one
solver thread) that loads the road graph once (from the on-disk cache, or builds it there)
and answers plan requests over a pipe. Rules:

- one plan at a time per fleet: a second request for a fleet whose plan is queued or running
  raises `PlannerBusy` (REST answers 429 with Retry-After);
- one plan at a time on the machine (two cores shared with ingestion): other fleets' plans wait
  in a queue of at most `MAX_QUEUED_PLANS`, beyond which they get `PlannerBusy` too;
- a time limit per plan: the solver returns its best at `time_limit_s`; a child that has not
  answered `HARD_LIMIT_GRACE_S` later is killed (`PlanTimeout`);
- `cancel(fleet)` drops a queued plan or kills the running child (`PlanCancelled`); the next
  plan starts a fresh child, which reloads the cached graph in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

from backend.dispatch.planner import Plan, PlanError, PlanRequest

# Plans waiting for the solver (all fleets): a dispatcher's click waits at most a few plans.
MAX_QUEUED_PLANS = 4
# Nice value of the solver process: the gateway, the writer and the hub always come first.
SOLVER_NICE = 19
# After its own time limit the solver gets this long to answer before it is killed.
HARD_LIMIT_GRACE_S = 10.0
# Starting the child (imports, graph from cache) must not hang a request forever.
START_TIMEOUT_S = 120.0


class PlannerBusy(Exception):
    """A plan for this fleet is already queued or running, or the queue is full (HTTP 429)."""


class PlanCancelled(Exception):
    pass


class PlanTimeout(Exception):
    pass


@dataclass
class _Slot:
    fleet: str
    request: PlanRequest
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop()
                                   .create_future())
    running: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)


class SolverWorker:
    """Plans in a child process; see the module docstring for the rules."""

    def __init__(self, road_network: Path | None = None, cache_dir: Path | None = None,
                 nice: int = SOLVER_NICE):
        self.road_network = road_network
        self.cache_dir = cache_dir
        self.nice = nice
        self.basis: str | None = None
        self._proc = None
        self._conn = None
        self._slots: dict[str, _Slot] = {}
        self._queue: asyncio.Queue[_Slot] = asyncio.Queue()
        self._runner: asyncio.Task | None = None
        self._ids = itertools.count(1)

    # -- the asyncio side ----------------------------------------------------------------------

    def status(self, fleet: str) -> str | None:
        """"running", "queued", or None when the fleet has no plan in progress."""
        slot = self._slots.get(fleet)
        return None if slot is None else "running" if slot.running else "queued"

    async def wait_running(self, fleet: str) -> None:
        """Until the fleet's plan has reached the solver (returns at once if it has none)."""
        slot = self._slots.get(fleet)
        if slot is not None:
            await slot.started.wait()

    async def plan(self, fleet: str, request: PlanRequest) -> Plan:
        """Queue a plan for `fleet` and wait for it; `PlannerBusy` at once if it cannot queue."""
        if fleet in self._slots:
            raise PlannerBusy(f"a plan for fleet {fleet} is already running or queued")
        if len(self._slots) > MAX_QUEUED_PLANS:
            raise PlannerBusy(f"{len(self._slots)} plans in progress: try again shortly")
        slot = _Slot(fleet, request)
        self._slots[fleet] = slot
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="solver-worker")
        self._queue.put_nowait(slot)
        try:
            return await asyncio.shield(slot.future)
        finally:
            if self._slots.get(fleet) is slot and slot.future.done():
                del self._slots[fleet]

    def cancel(self, fleet: str) -> bool:
        """Cancel the fleet's queued or running plan; False if it has none."""
        slot = self._slots.pop(fleet, None)
        if slot is None:
            return False
        if not slot.future.done():
            slot.future.set_exception(PlanCancelled(f"plan for fleet {fleet} cancelled"))
        if slot.running:
            self._kill()
        return True

    async def close(self) -> None:
        for fleet in list(self._slots):
            self.cancel(fleet)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        self._discard_child()

    async def _run(self) -> None:
        while True:
            slot = await self._queue.get()
            if slot.future.done():  # cancelled while queued
                continue
            slot.running = True
            try:
                outcome = await self._solve(slot)
            except (EOFError, OSError):  # the child died: killed by cancel(), or crashed
                self._discard_child()
                outcome = PlanError("the solver process stopped")
            except (PlanError, PlanTimeout) as e:
                outcome = e
            finally:
                slot.running = False
                if self._slots.get(slot.fleet) is slot:
                    del self._slots[slot.fleet]
            if not slot.future.done():
                if isinstance(outcome, Exception):
                    slot.future.set_exception(outcome)
                else:
                    slot.future.set_result(outcome)

    async def _solve(self, slot: _Slot) -> Plan:
        await self._ensure_child()
        self._conn.send((next(self._ids), slot.request))
        slot.started.set()
        return await self._answer(slot.request)

    async def _answer(self, request: PlanRequest) -> Plan:
        limit = request.time_limit_s + HARD_LIMIT_GRACE_S
        reply = await self._receive(limit)
        if reply is None:
            self._discard_child()
            raise PlanTimeout(f"the solver did not answer within {limit:.0f} s")
        _, status, payload = reply
        if status == "ok":
            return payload
        if status == "error":
            raise PlanError(payload)
        self._discard_child()  # a crash: start clean next time
        raise PlanError(f"the solver failed: {payload}")

    async def _receive(self, timeout: float):
        conn = self._conn
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, conn.poll, timeout)
        if not ready:
            return None
        return conn.recv()  # EOFError if the child was killed meanwhile

    async def _ensure_child(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        self._discard_child()
        ctx = multiprocessing.get_context("spawn")  # never fork an asyncio process
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(child, self.road_network, self.cache_dir, self.nice),
                           name="fleet-planner", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        hello = await self._receive(START_TIMEOUT_S)
        if hello is None or hello[1] != "ready":
            self._discard_child()
            raise PlanError(f"the solver process did not start: {hello and hello[2]}")
        self.basis = hello[2]

    def _kill(self) -> None:
        """Kill the child; the reader (if any) then sees EOF and discards the pipe."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def _discard_child(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
        if conn is not None:
            conn.close()


# -- the child process ---------------------------------------------------------------------------

def travel_source(road_network: Path | None, cache_dir: Path | None, learned: bool = False):
    """The travel-time source: the road network's graph (cached), else straight line. With
    `learned` (live ETAs), the speeds learned from the fleet's history when they were learned
    for this graph (`python -m backend speeds learn`; speeds.py)."""
    from backend.dispatch.matrix import RoadMatrix, StraightLineMatrix
    from backend.dispatch.roads import default_cache_dir, load_road_graph

    if road_network is None:
        return StraightLineMatrix()
    cache = cache_dir or default_cache_dir()
    rm = RoadMatrix(load_road_graph(Path(road_network), cache))
    if learned:
        from backend.dispatch.speeds import LearnedSpeeds, LearnedTravel, speeds_path

        speeds = LearnedSpeeds.load(speeds_path(cache, rm.graph.sha256), rm.graph.sha256)
        if speeds is not None:
            return LearnedTravel(rm, speeds)
    return rm


def serve(conn, road_network, cache_dir, nice: int = SOLVER_NICE) -> None:
    """The child's loop: (id, PlanRequest) in, (id, "ok"|"error"|"crash", payload) out."""
    from backend.dispatch.matrix import SnapError
    from backend.dispatch.planner import plan

    with contextlib.suppress(OSError):
        os.nice(nice)
    try:
        travel = travel_source(road_network, cache_dir)
    except Exception as e:  # a bad extract: tell the parent in words, then stop
        conn.send((0, "crash", str(e)))
        return
    conn.send((0, "ready", travel.basis))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        req_id, request = msg
        try:
            result = (req_id, "ok", plan(request, travel))
        except (PlanError, SnapError) as e:
            result = (req_id, "error", str(e))
        except Exception as e:  # the solver's own failure: reported, the parent restarts us
            result = (req_id, "crash", repr(e))
        try:
            conn.send(result)
        except (OSError, EOFError):
            return
