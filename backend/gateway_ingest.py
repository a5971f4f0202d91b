"""The gateway's batch path for all connections at once: commit, acknowledge, publish, alerts.

A validated batch goes to the writer as a submission with a callback (no task or future per
batch); the writer puts every batch queued in one event-loop tick into one transaction. When
it committed, each batch is acknowledged on its connection at once; the rows committed in the
tick are published to the hub once (each vehicle's newest position) and handed to one alert
consumer that evaluates them in bulk (alert rules, then arrivals at stops). One timer for all
connections watches the oldest batch still waiting for its commit (`ack_wait_s`), re-armed
only when it fires.

The work a commit brings is bounded per event-loop callback (a commit of a backlog settles
thousands of batches at once): its acks leave `ACKS_PER_CALLBACK` connections at a time, the
oldest commits first (`AckQueue`), and the alert consumer takes `ALERT_ROWS_PER_STEP` rows per
step, so datagrams are read between the pieces instead of after all of them.

Exactly once is the writer's and the store's (the ack leaves only after the commit); a row
the database refuses is isolated by the writer and kept as a dead letter, so a poison row in
a shared transaction costs only that row.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING

from geostream.clock import wall_ms
from geostream.errors import ErrorCode
from geostream.messages import Batch

from .hub import Hub, row_feature
from .store.base import DeadLetter, StoredReading
from .writer import Submission, WriterStopped

if TYPE_CHECKING:
    from .fanout import NatsFanout
    from .gateway import Gateway
    from .gateway_conn import GatewayProtocol

log = logging.getLogger("backend.gateway")

# Connections whose acks one callback sends (then the loop reads datagrams and the edge sends
# these acks' datagrams before the next piece). At 10,000 vehicles × 1 Hz a commit every 20 ms
# holds ~200 batches: one piece; a backlog's commit of thousands is cut into pieces of a few
# ms each (an ack's queueing ~7 µs here, its datagram ~15 µs at the edge, measured at 10,000
# on this project's machine), well below the 50 ms a loop stall is counted from.
ACKS_PER_CALLBACK = 256
# Committed rows the alert consumer evaluates per step before it lets the loop run (their
# quiet evaluation is a few µs a row); a step's rows are consecutive in commit order, so the
# pieces are evaluated as if the ticks had been smaller.
ALERT_ROWS_PER_STEP = 1000


class AckQueue:
    """Connections with acks queued, in the order their first ack was queued (sans-IO): what
    the end of a tick sends, `ACKS_PER_CALLBACK` at a time, oldest first, so no vehicle waits
    behind the same others tick after tick. A connection is in it once however many of its
    batches committed meanwhile (its one flush sends them all)."""

    __slots__ = ("_queued",)

    def __init__(self) -> None:
        self._queued: dict = {}  # insertion-ordered: a set would order by hash

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, conn) -> None:
        self._queued[conn] = None

    def take(self, n: int) -> list:
        """Up to `n` connections, the longest waiting first, no longer queued."""
        queued = self._queued
        if len(queued) <= n:
            self._queued = {}
            return list(queued)
        out = []
        for conn in queued:
            out.append(conn)
            if len(out) == n:
                break
        for conn in out:
            del queued[conn]
        return out


def publish_positions(hub: Hub | NatsFanout, rows: list[StoredReading]) -> None:
    """The newest committed position of each vehicle among `rows` (a validated position has
    lat and lon), to the live feed: row by row while the hub has no subscriber for positions
    (`Hub.position_row` keeps the newest, no feature made), else each vehicle's newest once."""
    if type(hub) is Hub and not hub.takes_positions:
        position_row = hub.position_row
        for r in rows:
            if r.kind == "pos" and r.lat is not None and r.lon is not None:
                position_row(r)
        return
    newest: dict[str, StoredReading] = {}
    get = newest.get
    for r in rows:
        if r.kind == "pos":
            known = get(r.vehicle_id)
            if known is None or r.time_ms > known.time_ms:
                newest[r.vehicle_id] = r
    position = hub.position
    for r in newest.values():
        if r.lat is not None and r.lon is not None:
            position(r.vehicle_id, r.time_ms, row_feature(r))


class _Waiting(Submission):
    """One batch between its validation and its commit: the writer's submission itself (its
    rows are `readings` and `dead`), told the writer's answer once (`settle`)."""

    __slots__ = ("batch", "deadline", "ingest", "proto", "settled", "started")

    def __init__(self, ingest: Ingest, proto: GatewayProtocol, batch: Batch,
                 good: list[StoredReading], dead: list[DeadLetter], started: float,
                 deadline: float):
        self.readings, self.dead, self.since = good, dead, started
        self.ingest, self.proto, self.batch = ingest, proto, batch
        self.started, self.deadline = started, deadline
        self.settled = False

    def settle(self, error: BaseException | None) -> None:
        try:
            if error is None and not self.settled:  # committed: nearly every batch
                self.ingest._committed(self)
            else:
                self.ingest._settled(self, error)
        except Exception:  # a bug here must not stop the writer for everyone
            log.exception("a committed batch's ack failed")


class Ingest:
    """Batches of every connection on their way from validation to ack, alerts and the hub."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self._loop: asyncio.AbstractEventLoop | None = None
        # waiting for their commit, oldest first (deadlines ascend with the arrival order)
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._unsettled = 0
        self._timer: asyncio.TimerHandle | None = None  # at the oldest waiting deadline or before
        # held while the writer's backlog is full (flow control: the vehicles keep the rest)
        self._parked: collections.deque[_Waiting] = collections.deque()
        # committed in this tick: published and evaluated together at its end
        self._tick_rows: list[StoredReading] = []
        self._to_flush = AckQueue()  # connections with acks queued, oldest first
        self._flush_due = False  # `_flush_acks` is scheduled
        self._credit = 0  # the credit the tick's acks carry (set by its first commit)
        self._now = 0.0  # the loop's time at the tick's first commit (its acks' latency)
        self._latencies: list[float] = []  # the tick's acks' latencies, for the histogram
        self._tick_batches = self._tick_readings = 0  # committed in the tick, for the stats
        self._tick_due = False
        self._alert_rows: list[StoredReading] = []  # for the alert consumer
        self._alert_task: asyncio.Task | None = None
        self._idle: asyncio.Event | None = None

    # --- in ------------------------------------------------------------------------------

    def batch(self, proto: GatewayProtocol, batch: Batch, good: list[StoredReading],
              dead: list[DeadLetter]) -> None:
        """A validated batch of `proto`'s: to the writer (or parked while it is full)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        gw = self.gateway
        w = _Waiting(self, proto, batch, good, dead, now, now + gw.ack_wait_s)
        self._waiting.append(w)
        self._unsettled += 1
        writer = gw.writer
        if self._parked or writer.full:
            self._parked.append(w)
            writer.on_space = self._unpark
        else:
            try:
                writer.add(w)
            except WriterStopped as exc:
                self._settled(w, exc)
        if self._timer is None:  # else armed for an older batch: its firing looks further
            self._arm()

    def _enqueue(self, w: _Waiting) -> None:
        """`w` to the writer (`batch` does the same inline)."""
        try:
            self.gateway.writer.add(w)
        except WriterStopped as exc:
            self._settled(w, exc)

    def _unpark(self) -> None:
        writer = self.gateway.writer
        while self._parked and not writer.full:
            w = self._parked.popleft()
            if not w.settled:
                w.since = self._loop.time()  # type: ignore[union-attr]  # queued now
                self._enqueue(w)
        if not self._parked:
            writer.on_space = None

    # --- the writer's answer ---------------------------------------------------------------

    def _settled(self, w: _Waiting, error: BaseException | None) -> None:
        """The writer's answer for `w`, whatever it is (`_committed`: the usual one)."""
        if w.settled:  # timed out before: the late commit only lets a re-send be acked
            return
        if error is None:
            self._committed(w)
            return
        self._done(w)
        if isinstance(error, WriterStopped):
            return  # not acknowledged: the agent re-sends
        # Unstorable: not even a dead letter was accepted
        log.error("batch of %s not storable: %s", w.proto.vehicle, error)
        w.proto.refuse(ErrorCode.INTERNAL, "internal error")

    def _committed(self, w: _Waiting) -> None:
        """`w` (not settled before) committed: its ack queued on its connection, sent at the
        tick's end with the others; its rows kept for the tick's end. The commit's batches
        share what is the same for all of them: the credit (the writer's backlog is settled
        before its owners hear), the loop's time for the ack latency, the counters (added to
        the gateway's at the tick's end)."""
        w.settled = True
        self._unsettled -= 1
        if self._unsettled == 0 and self._idle is not None:
            self._idle.set()
        self._tick_batches += 1
        self._tick_readings += len(w.readings)
        if self._tick_due:
            credit, now = self._credit, self._now
        else:  # the first of the tick's commits
            self._tick_due = True
            credit = self._credit = self.gateway.credit()
            now = self._now = self._loop.time()  # type: ignore[union-attr]
            self._loop.call_soon(self._end_tick)  # type: ignore[union-attr]
        proto = w.proto
        if proto.committed(w.batch, credit):  # False: closing (no ack)
            self._latencies.append(now - w.started)
            self._to_flush.add(proto)
        # committed: published and evaluated also while the connection closes
        self._tick_rows += w.readings

    def _done(self, w: _Waiting) -> None:
        w.settled = True
        self._unsettled -= 1
        if self._unsettled == 0 and self._idle is not None:
            self._idle.set()

    # --- once per tick -------------------------------------------------------------------

    def _end_tick(self) -> None:
        """Send the tick's acks (once per connection, `ACKS_PER_CALLBACK` at a time), publish
        its newest positions once, hand its rows to the alert consumer."""
        rows, self._tick_rows, self._tick_due = self._tick_rows, [], False
        gw = self.gateway
        gw.stats.committed(self._tick_batches, self._tick_readings)
        self._tick_batches = self._tick_readings = 0
        observe = gw.ack_latency.observe
        for latency in self._latencies:
            observe(latency)
        self._latencies.clear()
        waiting = self._waiting  # the settled ones in front (most of them: commits are in
        while waiting and waiting[0].settled:  # arrival order), not kept until the timer
            waiting.popleft()
        if not self._flush_due:  # else the acks of this tick wait behind the older ones
            self._flush_acks()
        publish_positions(gw.hub, rows)
        self._alert_rows.extend(rows)
        if self._alert_task is None and self._alert_rows:
            self._alert_task = self._loop.create_task(self._alerts())  # type: ignore[union-attr]

    def _flush_acks(self) -> None:
        """Send the queued acks of the connections waiting longest (one transmit each for all
        its acks); the rest in the next callback, after the loop read what arrived."""
        self._flush_due = False
        for proto in self._to_flush.take(ACKS_PER_CALLBACK):
            proto.flush_acks()
        if self._to_flush:
            self._flush_due = True
            self._loop.call_soon(self._flush_acks)  # type: ignore[union-attr]

    async def _alerts(self) -> None:
        """One consumer: whatever committed meanwhile is evaluated together (up to
        `ALERT_ROWS_PER_STEP` rows a step), after the acks (rules never delay them)."""
        gw = self.gateway
        try:
            while self._alert_rows:
                if len(self._alert_rows) <= ALERT_ROWS_PER_STEP:
                    rows, self._alert_rows = self._alert_rows, []
                else:  # a backlog's rows: a step's worth, then the loop runs
                    rows = self._alert_rows[:ALERT_ROWS_PER_STEP]
                    del self._alert_rows[:ALERT_ROWS_PER_STEP]
                now = wall_ms()
                await gw.alerts.on_committed(rows, now)
                await gw.dispatch.on_committed(rows, now)  # arrivals at stops
                if self._alert_rows:
                    await asyncio.sleep(0)  # quiet steps never suspend by themselves
        finally:
            self._alert_task = None

    # --- the one timer: no acknowledgement waits forever -------------------------------

    def _arm(self) -> None:
        """Arm the timer for the oldest batch still waiting, unless it is armed already: a
        deadline later than the armed one is looked at when that fires (deadlines ascend with
        the arrival order), so a batch arms nothing, and its commit cancels nothing."""
        while self._waiting and self._waiting[0].settled:
            self._waiting.popleft()
        if self._timer is None and self._waiting:
            self._timer = self._loop.call_at(  # type: ignore[union-attr]
                self._waiting[0].deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()  # type: ignore[union-attr]
        gw = self.gateway
        while self._waiting and (self._waiting[0].settled or self._waiting[0].deadline <= now):
            w = self._waiting.popleft()
            if w.settled:
                continue
            # the agent reconnects and re-sends; if the rows commit later after all, the
            # re-sent ones are acknowledged without a second row
            self._done(w)
            gw.stats.commit_timeouts += 1
            w.proto.refuse(ErrorCode.INTERNAL, f"commit not confirmed within "
                                               f"{gw.ack_wait_s:.0f}s")
        self._arm()

    # --- a graceful stop ---------------------------------------------------------------

    async def settled(self, timeout: float) -> None:
        """Wait until every batch handed in was settled and the alert consumer evaluated the
        committed rows (or the timeout passed)."""
        try:
            async with asyncio.timeout(timeout):
                if self._unsettled:
                    self._idle = asyncio.Event()
                    await self._idle.wait()
                await asyncio.sleep(0)  # the last tick's end
                while self._flush_due:  # its acks, a piece per callback
                    await asyncio.sleep(0)
                if self._alert_task is not None:
                    await asyncio.shield(self._alert_task)
        except TimeoutError:
            pass
        finally:
            self._idle = None
