"""Group-commit writer: batches from all vehicles share database transactions.

A submission resolves only after the transaction holding it committed, which is what lets the
gateway acknowledge. A transaction closes when it holds `max_rows` rows, or when the oldest
waiting submission has lingered `linger_s` (0: as soon as the previous commit finished, so an
idle system commits at once and a busy one commits in large batches). Transactions start at
most every `interval_s` (pacing): the first after a pause at once, then the submissions of
each interval together, so a steady trickle of one-reading batches (1 Hz vehicles, each alone
in its event-loop tick) shares one transaction, one fsync, one thread hand-off and one tick of
acks instead of paying each per reading.

Failures are split in two (the store's `is_transient` decides):
- the database is down or restarting: keep the batch, retry with exponential backoff; new
  submissions wait in a bounded backlog, and `submit` blocks once it is full, so the gateway
  stops acknowledging and vehicles keep their data in their journals;
- the data is bad: the batch is bisected until the offending rows are alone; each of those goes
  to the dead-letter table with its error and everything else is stored (and acknowledged). A
  dead letter the store refuses too is kept as text (its `repr`), so one row can never stop the
  writer.

The loop itself runs under a supervisor: should it die anyway (a bug, not the data), the
submissions it was committing fail (their vehicles are told and re-send), the failure is logged
as an error, counted (`restarts`, `GET /metrics` fleet_writer_restarts) and kept as `alarm` in
`GET /api/status`, and the loop starts again after a short pause: the other vehicles' batches
keep committing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import reprlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from geostream.backoff import Backoff

from .store.base import DeadLetter, StoredReading
from .store.protocols import Store

log = logging.getLogger(__name__)

# Largest transaction: big enough to amortise the fsync, small enough to keep ack latency
# under ~100 ms on an SD card or a busy PostgreSQL.
DEFAULT_MAX_ROWS = 5000
# Shortest time between the starts of two transactions. At 1 Hz a vehicle's batch arrives alone
# in its event-loop tick; committed one by one, each reading paid a transaction, an fsync, the
# store thread's hand-off and a tick of acks: 505 against 312 µs of gateway CPU per reading at
# 300 vehicles (bench_gateway_path, docs/benchmarks.md "The gateway's batch path"). A commit
# also has a cost of its own whatever it holds (SQLite: the WAL pages of the 16 arrival parts'
# tails and their fsync, 1.2-2.2 ms of the store thread; on the loop: the hand-off, a tick of acks,
# the alert consumer's tick), so 50 ms, not 20: ~200 readings per commit at 4,000 readings/s
# instead of ~80, ~500 at 10,000/s instead of ~200 (the store thread's CPU per reading
# 0.75-0.95× at 4,000 vehicles, 0.81-0.82× at 10,000: docs/benchmarks.md "Where the gateway's
# CPU per acked reading goes, in place", session 16). It adds at most that to an ack (the
# budget is a p99 of 500 ms); a commit that takes longer than this is followed at once.
DEFAULT_INTERVAL_S = 0.050
# Submissions settled per step of the loop after a commit before the event loop runs again:
# the gateway's settle of a batch (its ack queued, its rows kept for the tick) is a few µs, so
# a commit of `DEFAULT_MAX_ROWS` one-reading batches settled at once held the loop ~25 ms.
SETTLES_PER_STEP = 1000
# Readings held in memory while the database is away (~300 bytes each: ~60 MB). Beyond this
# `submit` blocks; vehicles keep the rest in their journals.
DEFAULT_MAX_BACKLOG_ROWS = 200_000
RETRY_MIN_S = 0.2
# A failover takes seconds (docs/benchmarks.md, "Database failover"): a longer wait between
# attempts only adds to the time without acknowledgements once the new primary is up, and an
# attempt against a database that is away costs one refused connection.
RETRY_MAX_S = 2.0
# How much of a refused row a dead letter keeps when even the row's JSON is refused.
UNSTORABLE_REPR_CHARS = 2000


class WriterStopped(RuntimeError):
    """The writer no longer accepts submissions (shutting down)."""


class Unstorable(RuntimeError):
    """Not even the dead-letter table accepts this data: the batch must not be acknowledged."""


# What a submission's owner is told once: None when committed, else why not (WriterStopped,
# Unstorable). Called on the event loop, from the writer's loop; it must not raise.
Settled = Callable[[BaseException | None], None]


class Submission:
    """Rows waiting for a transaction (`readings`, `dead`, queued at `since` on the loop's
    clock), told once how it was settled: `settle(None)` when committed, else
    `settle(error)`. The writer may call `settle` again after the first (a refused dead
    letter settles a submission before its commit ends): only the first counts. The gateway
    queues its own kind (backend/gateway_ingest.py `_Waiting`: one object per batch from its
    validation to its ack, no callback object besides); `enqueue` wraps a callback."""

    __slots__ = ("dead", "readings", "since")

    def __init__(self, readings: list[StoredReading], dead: list[DeadLetter], since: float):
        self.readings, self.dead, self.since = readings, dead, since

    def settle(self, error: BaseException | None) -> None:
        raise NotImplementedError


class _Submission(Submission):
    """A submission whose owner is a `Settled` callback."""

    __slots__ = ("settled",)

    def __init__(self, readings: list[StoredReading], dead: list[DeadLetter], since: float,
                 settled: Settled):
        super().__init__(readings, dead, since)
        self.settled: Settled | None = settled

    def settle(self, error: BaseException | None) -> None:
        if self.settled is not None:
            tell, self.settled = self.settled, None
            try:
                tell(error)
            except Exception:  # the owner's bug must not stop the writer for everyone
                log.exception("a submission's owner failed on its result")


@dataclass
class WriterStats:
    transactions: int = 0
    rows: int = 0
    dead_letters: int = 0
    failures: int = 0           # failed write attempts (transient or not)
    isolated_rows: int = 0      # rows that failed alone and went to the dead-letter table
    backlog_rows: int = 0
    last_commit_s: float = 0.0
    connected: bool = True
    last_error: str = ""
    restarts: int = 0           # times the loop died and was started again
    alarm: str = ""             # why it last died (empty: never)


class BatchWriter:
    def __init__(self, store: Store, max_rows: int = DEFAULT_MAX_ROWS, linger_s: float = 0.0,
                 max_backlog_rows: int = DEFAULT_MAX_BACKLOG_ROWS,
                 interval_s: float = DEFAULT_INTERVAL_S):
        self.store = store
        self.max_rows = max_rows
        self.linger_s = linger_s
        self.interval_s = interval_s
        self.max_backlog_rows = max_backlog_rows
        self.stats = WriterStats()
        self._pending: collections.deque[Submission] = collections.deque()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        # called when the backlog falls below its bound again (the gateway resumes enqueueing)
        self.on_space: Callable[[], None] | None = None
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committing: list[Submission] = []  # what the loop is committing right now
        self._last_start = float("-inf")  # the loop's time the last transaction started
        self._pacing: asyncio.Future | None = None  # resolved to end the pause early

    # --- what the gateway sees ------------------------------------------------------------

    @property
    def backlog_rows(self) -> int:
        return self.stats.backlog_rows

    @property
    def pressure(self) -> float:
        """0 (idle) … 1 (backlog full): the gateway scales its credit down with this."""
        return min(1.0, self.stats.backlog_rows / self.max_backlog_rows)

    @property
    def lag_s(self) -> float:
        """Age of the oldest submission not yet committed."""
        return self._now() - self._pending[0].since if self._pending else 0.0

    def _now(self) -> float:
        """The loop's clock (`start()` set the loop; nothing is pending before)."""
        assert self._loop is not None, "the writer was not started"
        return self._loop.time()

    def status(self) -> dict:
        return {**dataclasses.asdict(self.stats), "lag_s": round(self.lag_s, 3),
                "pressure": round(self.pressure, 3)}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        # the loop's clock (lag, linger), so a test on an emulated clock sees one time
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._supervise(), name="writer")

    async def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, commit everything already submitted, then stop. After `timeout`
        the rest is abandoned unacknowledged (the vehicles still hold it)."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        self._space.set()
        self._end_pause()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        finally:
            for sub in self._pending:
                sub.settle(WriterStopped("writer stopped before commit"))
            self._pending.clear()
            self._task = None

    @property
    def full(self) -> bool:
        """The backlog reached its bound: `enqueue` waits for `on_space`, `submit` blocks."""
        return self.stats.backlog_rows >= self.max_backlog_rows

    def enqueue(self, readings: list[StoredReading], dead: list[DeadLetter],
                settled: Settled) -> None:
        """Queue rows for the next transaction; `settled(None)` once they committed, or
        `settled(error)`. No task or future (the gateway queues its batches with `add`).
        Raises WriterStopped if the writer is not running; the caller checks `full` first."""
        self.add(_Submission(readings, dead, self._now(), settled))

    def add(self, sub: Submission) -> None:
        """`enqueue` of a submission the caller made (its `since`: now, on the loop's clock):
        no callback object besides it, for the gateway's every batch."""
        if self._stopping or self._task is None:
            raise WriterStopped("writer is not running")
        self.stats.backlog_rows += len(sub.readings)
        self._pending.append(sub)
        self._wakeup.set()
        if self._pacing is not None and self.stats.backlog_rows >= self.max_rows:
            self._end_pause()  # a full transaction waits: no reason to pause

    async def submit(self, readings: list[StoredReading], dead: list[DeadLetter]) -> None:
        """Returns once committed. Blocks while the backlog is full; raises WriterStopped if
        the writer is stopping and Unstorable if the database refuses even a dead letter."""
        while not self._stopping and self.full:
            self._space.clear()
            await self._space.wait()
        done = asyncio.get_running_loop().create_future()

        def settled(error: BaseException | None) -> None:
            if not done.done():
                done.set_result(error)

        self.enqueue(readings, dead, settled)
        if (error := await done) is not None:
            raise error

    # --- the loop -------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Run the loop; if it dies, fail what it was committing, raise the alarm, restart."""
        backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        while True:
            try:
                await self._run()
                return
            except Exception as exc:
                self.stats.restarts += 1
                self.stats.alarm = f"{type(exc).__name__}: {exc}"[:300]
                log.error("writer loop died (restart %d): %s", self.stats.restarts,
                          self.stats.alarm, exc_info=exc)
                self._fail_committing(exc)
                await asyncio.sleep(backoff.next())

    def _fail_committing(self, exc: BaseException) -> None:
        """The submissions of a commit that blew up: unacknowledged (the vehicles re-send)."""
        for sub in self._committing:
            if sub in self._pending:
                self._pending.remove(sub)
                self.stats.backlog_rows -= len(sub.readings)
            sub.settle(Unstorable(f"writer failed: {type(exc).__name__}"))
        self._committing = []
        self._room()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.linger_s and not self._stopping:
                await self._linger()
            if self.interval_s and not self._stopping:
                await self._pace()
            subs: list[Submission] = []
            rows = 0
            for sub in self._pending:  # they stay queued while committing, for lag_s
                if subs and rows + len(sub.readings) > self.max_rows:
                    break
                subs.append(sub)
                rows += len(sub.readings)
            self._committing = subs
            self._last_start = self._now()
            await self._commit(subs)  # if cancelled, they stay queued and stop() fails them
            self._committing = []
            for _ in subs:
                self._pending.popleft()
            self.stats.backlog_rows -= rows  # before the owners hear: one credit for them all
            await self._settle_committed(subs)
            if not self.full:
                self._room()

    async def _settle_committed(self, subs: list[Submission]) -> None:
        """Tell a commit's owners, `SETTLES_PER_STEP` at a time (the loop runs between: the
        first ones' acks leave meanwhile). Cancelled in between (a stop's timeout), the rest
        are told at once: their rows are committed."""
        for i in range(0, len(subs), SETTLES_PER_STEP):
            if i:
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    for sub in subs[i:]:
                        sub.settle(None)
                    raise
            for sub in subs[i:i + SETTLES_PER_STEP]:
                sub.settle(None)

    def _room(self) -> None:
        self._space.set()
        if self.on_space is not None:
            self.on_space()

    async def _pace(self) -> None:
        """Pause until `interval_s` after the previous transaction started (one loop timer),
        unless a full transaction is waiting or the writer stops."""
        loop = self._loop
        assert loop is not None, "the writer was not started"
        at = self._last_start + self.interval_s
        if at <= loop.time() or self.stats.backlog_rows >= self.max_rows:
            return
        self._pacing = loop.create_future()
        handle = loop.call_at(at, self._end_pause)
        try:
            await self._pacing
        finally:
            handle.cancel()
            self._pacing = None

    def _end_pause(self) -> None:
        if self._pacing is not None and not self._pacing.done():
            self._pacing.set_result(None)

    async def _linger(self) -> None:
        deadline = self._pending[0].since + self.linger_s
        while not self._stopping and sum(len(s.readings) for s in self._pending) < self.max_rows:
            left = deadline - self._now()
            if left <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(left):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _transient(self, exc: BaseException) -> bool:
        check = getattr(self.store, "is_transient", None)
        return True if check is None else check(exc)

    async def _write(self, readings: list[StoredReading],
                     dead: list[DeadLetter]) -> BaseException | None:
        """Write in one transaction, retrying transient failures forever with backoff.
        Returns the error if the data itself was refused."""
        backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        while True:
            t0 = time.perf_counter()
            try:
                await self.store.write(readings, dead)
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if not self._transient(exc):
                    return exc
                self.stats.connected = False
                delay = backoff.next()
                log.warning("store write of %d rows failed (%s); retrying in %.1fs",
                            len(readings), exc, delay)
                await asyncio.sleep(delay)
                continue
            if not self.stats.connected:
                log.info("store writable again")
            self.stats.connected = True
            self.stats.transactions += 1
            self.stats.rows += len(readings)
            self.stats.dead_letters += len(dead)
            self.stats.last_commit_s = time.perf_counter() - t0
            return None

    async def _commit(self, subs: list[Submission]) -> None:
        readings = [r for s in subs for r in s.readings]
        dead = [d for s in subs for d in s.dead]
        error = await self._write(readings, dead)
        if error is None:
            return
        log.warning("batch of %d rows refused (%s): isolating the bad rows", len(readings), error)
        for sub in subs:
            isolated: list[DeadLetter] = []
            await self._isolate(sub.readings, isolated)
            self.stats.isolated_rows += len(isolated)
            for letter in sub.dead + isolated:
                error = await self._write_dead_letter(letter)
                if error is not None:
                    log.error("cannot store dead letter %s/%s/%s: %s", letter.vehicle_id,
                              letter.epoch, letter.seq, error)
                    sub.settle(Unstorable(str(error)))
                    break

    async def _write_dead_letter(self, letter: DeadLetter) -> BaseException | None:
        """Store one dead letter; if the store refuses its reading, keep the reading as text."""
        error = await self._write([], [letter])
        if error is None:
            return None
        plain = dataclasses.replace(
            letter, reading={"unstorable": _repr(letter.reading)},
            error=f"{letter.error}; reading kept as text ({type(error).__name__}: {error})"[:1000])
        return await self._write([], [plain])

    async def _isolate(self, readings: list[StoredReading], out: list[DeadLetter]) -> None:
        """Store what the database accepts; the rows refused on their own go to `out`."""
        if not readings:
            return
        error = await self._write(readings, [])
        if error is None:
            return
        if len(readings) == 1:
            r = readings[0]
            out.append(DeadLetter(r.vehicle_id, r.epoch, r.seq, _as_json(r),
                                  f"{type(error).__name__}: {error}"[:1000], r.received_ms))
            return
        half = len(readings) // 2
        await self._isolate(readings[:half], out)
        await self._isolate(readings[half:], out)


def _as_json(r: StoredReading) -> dict:
    """A refused row for its dead letter (fields only: `data` is kept by reference, so even a
    structure that contains itself costs nothing here; the store may then refuse it)."""
    return {f: v for f in StoredReading.__dataclass_fields__
            if (v := getattr(r, f)) is not None}


def _repr(value) -> str:
    """Bounded text of anything (reprlib: no deep or cyclic walk)."""
    return _REPR.repr(value)[:UNSTORABLE_REPR_CHARS]


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 4, 200, 200
