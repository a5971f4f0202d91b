"""The alert engine: the async edge around the evaluator (store, checkpoints, hub, timer).

Per vehicle, after each commit: continue from the state cached after the previous evaluation
when every new reading is newer than it (the live path: it evaluates the committed rows as the
store would read them back and reconciles with the alerts it cached, so it costs no database
round trip unless an alert changes or a checkpoint is due), or
else restart from the newest stored checkpoint before the earliest new reading and read the
vehicle's readings from there (the backfill path). The resulting episodes are reconciled with
the stored alerts that evaluation could change, and only the differences are written (one
transaction, with the new checkpoints) and pushed. Stale and offline are clock-driven and run
in `on_timer(now)`. docs/alerts.md explains why this equals in-order delivery.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
from collections import Counter
from collections.abc import Callable, Iterable

from ..store.base import TIME_RULES, AlertQuery, StoredAlert, StoredReading
from .evaluate import Evaluator, Fence, reading_order
from .evaluated import NOTHING, Span, includes, longest_run, noted
from .fences import fences_from_rows
from .quiet import QuietRules
from .reconcile import reconcile
from .rules import RuleSet
from .timed import offline_changes, stale_changes

log = logging.getLogger(__name__)

_PENDING = object()  # "the vehicle's pending earliest time", taken under its lock

# A checkpoint per 5 minutes of device time: a backfill re-reads at most this much before its
# earliest reading, and a vehicle costs ~300 checkpoint rows a day.
CHECKPOINT_EVERY_MS = 300_000
# Geofence and vehicle lists are re-read this often by the timer (edits show within a minute).
REFRESH_MS = 30_000
# Checkpoints older than this are dropped (each vehicle keeps its newest): an agent never sends
# readings older than its journal's max_age_h (168 h), so no backfill needs them.
CHECKPOINT_RETAIN_MS = 8 * 86_400_000
PRUNE_EVERY_MS = 3_600_000
# Live checkpoints that change no alert wait for one transaction across vehicles, at most this
# long or this many: losing them (kill -9) only makes the restart catch-up start further back.
FLUSH_EVERY_MS = 1_000
FLUSH_MAX = 500
# Rows a replay read that may still reach on_committed afterwards (their batch was between
# commit and evaluation): the newest this many are remembered until the vehicle's next
# evaluation, which skips them (~7 minutes of a 10 Hz vehicle).
REPLAYED_KEYS = 4096
# Disconnected vehicles whose cached state is kept for their reconnect (least recently
# disconnected dropped first): a state is ~1–2 KB, so 20,000 stay within ~40 MB, and a storm's
# reconnects of a fleet of that size resume live instead of replaying from a checkpoint.
MAX_IDLE_STATES = 20_000
# A drain sends each batch's newest position first, ahead of the backlog (live-first): a
# reading whose sequence number is more than HOLD_GAP past the newest one evaluated waits for
# the backlog below it, so the vehicle is evaluated in order once (a backlog evaluated after it
# would replay from a checkpoint, batch after batch). Smaller gaps (an invalid reading stored
# apart, a refused driver action) are evaluated at once; a reading waits at most HOLD_MS of
# wall time (a backlog the journal dropped, a drain longer than that): its alerts come that
# much later, never lost. It relies on the agent numbering readings in the order it records
# them (docs/protocol.md §5); `AlertEngine(hold_gap=None)` evaluates every reading at once.
HOLD_GAP = 16
HOLD_MS = 30_000
# Vehicles whose evaluations from the store (a first evaluation, a replay, the catch-up at
# start) load their state together: one query per kind (checkpoint, readings, alerts) and one
# save for all of them instead of four store calls per vehicle, one vehicle after another (on
# PostgreSQL, 371 of 1,000 newly connected vehicles were not yet evaluated after 20 s, their
# queries sharing the pool with the hellos' authentication). Bounded: a replay reads up to
# CHECKPOINT_EVERY_MS of a vehicle's readings, all of them for a vehicle without a checkpoint.
REPLAY_BATCH = 200
# Open clock-driven alerts loaded at start (at most one per rule and vehicle).
OPEN_LIMIT = 1_000_000
# The rules on_timer decides (the other TIME_RULES are other modules' clocks).
_CLOCK_RULES = ("stale", "offline")


class Cached:
    """A vehicle's evaluation as it stands after its newest reading (the live path's start)."""

    __slots__ = ("end", "epoch", "holes", "last_cp", "low", "seq", "state", "window")

    def __init__(self, end: int, state: dict, last_cp: int | None, window: dict[tuple, object],
                 span: Span = NOTHING):
        self.end = end  # device time of the newest reading evaluated
        # the readings the state includes (backend/alerts/evaluated.py): the highest (epoch,
        # seq) evaluated (epoch None: unknown), and below it `low`.. less `holes`
        self.epoch, self.low, self.seq, self.holes = span
        self.state = state  # the evaluator's state after it (owned: changed in place)
        self.last_cp = last_cp  # device time of the newest checkpoint taken
        self.window = window  # the stored alerts the next live evaluation can change

    def span(self) -> Span:
        return self.epoch, self.low, self.seq, self.holes


class _Step:
    """One evaluation's outcome, before it is written: what `_settle` stores and caches."""

    __slots__ = ("base", "end", "last_cp", "live", "moves", "points", "retract", "span",
                 "state", "upserts", "window")

    def __init__(self, live, base, end, state, last_cp, points, window, upserts, moves,
                 retract):
        self.live, self.base, self.end, self.state, self.last_cp = live, base, end, state, last_cp
        self.points, self.window = points, window
        self.upserts, self.moves, self.retract = upserts, moves, retract
        self.span: Span = NOTHING  # the readings its state includes


class AlertEngine:
    def __init__(self, store, rules: RuleSet, publish: Callable[[dict], None] | None = None,
                 checkpoint_every_ms: int = CHECKPOINT_EVERY_MS, owners=None,
                 max_idle_states: int = MAX_IDLE_STATES, hold_gap: int | None = HOLD_GAP):
        """`owners`: the cluster's VehicleOwners (backend/cluster/owners.py), with which the
        clock-driven rules run only for the vehicles this process owns; None: one process
        owns every vehicle. `hold_gap`: hold live-first readings that far ahead of the
        backlog (HOLD_GAP; None: evaluate every reading at once)."""
        self.store = store
        self.owners = owners
        self.checkpoint_every_ms = checkpoint_every_ms
        self.rules = rules
        self.publish = publish or (lambda alert: None)
        self.fences: list[Fence] = []
        self.stats: dict = {"alerts_opened": Counter(), "evaluations": 0, "replays": 0,
                            "readings_evaluated": 0, "quiet_readings": 0, "held": 0,
                            "repeats": 0, "failures": 0, "read_back": 0}
        self._cache: dict[str, Cached] = {}
        self.max_idle_states = max_idle_states
        self.hold_gap = hold_gap
        self._idle: collections.OrderedDict[str, None] = collections.OrderedDict()  # cached,
        # not connected here: oldest disconnect first
        self._verify: set[str] = set()  # reconnected in a cluster: check the store once
        # live-first readings waiting for the backlog below them: vehicle → (since, rows)
        self._held: dict[str, tuple[int, dict[tuple[int, int], StoredReading]]] = {}
        self._rows: dict[str, dict[tuple, StoredReading]] = {}  # committed, not yet evaluated
        view = getattr(store, "as_read_back", None)  # the store's types (float4 in PostgreSQL)
        self._read_back: Callable[[StoredReading], StoredReading] = view or (lambda r: r)
        self._speed_view: Callable[[float], float] | None = getattr(store, "real_read_back",
                                                                     None)
        self._quiet: tuple[list[Fence], RuleSet, QuietRules] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: set[str] = set()  # vehicles whose lock is held (under evaluation)
        self._pending: dict[str, int] = {}  # earliest committed, not yet evaluated, reading
        self._replayed: dict[str, set[tuple[int, int]]] = {}  # (epoch, seq) the last replay read
        self._seen: dict[str, int] = {}  # newest device time per vehicle
        self._speed: dict[str, tuple[int, float | None, float, float]] = {}  # newest position
        self._connected_ms: dict[str, int] = {}
        self._timed: dict[tuple[str, str], StoredAlert] = {}  # open stale/offline alerts
        self._known: set[str] = set()
        self._deferred: dict[str, list[tuple[int, dict]]] = {}  # checkpoints not yet written
        self._deferred_ms: int | None = None  # when the oldest of them was deferred
        self._flush_lock = asyncio.Lock()
        self._started_ms = 0
        self._refreshed_ms: int | None = None
        self._pruned_ms: int | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, now_ms: int) -> None:
        """Load geofences, vehicles and open clock-driven alerts, then evaluate what each
        vehicle committed after its newest checkpoint (catch-up after a restart or crash)."""
        self._started_ms = now_ms
        await self._refresh(now_ms)
        for rule in TIME_RULES:
            for a in await self.store.list_alerts(AlertQuery(rule=rule, state="open",
                                                             limit=OPEN_LIMIT)):
                self._timed[(a.rule, a.vehicle_id)] = a
        for p in await self.store.last_positions():
            self._note_position(p["vehicle_id"], p["time_ms"], p["speed_kmh"], p["lat"], p["lon"])
        await self._evaluate_many(sorted(self._known), None, now_ms)

    async def geofences_changed(self) -> None:
        """A geofence was created, edited or deleted through this process's API: evaluate
        with the new set from the next reading on (other nodes pick it up within REFRESH_MS)."""
        self.fences = fences_from_rows(await self.store.geofences())
        self.stats["fence_reloads"] = self.stats.get("fence_reloads", 0) + 1

    async def _refresh(self, now_ms: int) -> None:
        self.fences = fences_from_rows(await self.store.geofences())
        self._known = {v["vehicle_id"] for v in await self.store.list_vehicles()
                       if v.get("revoked_ms") is None}
        self._refreshed_ms = now_ms

    def forget(self, vehicle: str) -> None:
        """Another process owns the vehicle now: its next evaluation here starts from the
        store, which holds what the other evaluated meanwhile."""
        self._cache.pop(vehicle, None)
        self._replayed.pop(vehicle, None)
        self._idle.pop(vehicle, None)
        self._verify.discard(vehicle)
        self._held.pop(vehicle, None)  # stored: the owner's evaluation reads them

    def reconnected(self, vehicle: str) -> None:
        """A vehicle connected to this process: its cached state carries on (one process owns
        a vehicle's evaluation). In a cluster another process may have held it between the
        disconnect and now: its first evaluation asks the store once whether readings came
        that this process has not seen (then it replays, as after `forget`)."""
        self._idle.pop(vehicle, None)
        if self.owners is not None and vehicle in self._cache:
            self._verify.add(vehicle)

    def disconnected(self, vehicle: str) -> None:
        """The vehicle's last connection here closed: its cached state is kept for a reconnect,
        up to `max_idle_states` disconnected vehicles (the least recently disconnected go)."""
        if vehicle not in self._cache:
            return
        self._idle[vehicle] = None
        self._idle.move_to_end(vehicle)
        while len(self._idle) > self.max_idle_states:
            old, _ = self._idle.popitem(last=False)
            self._cache.pop(old, None)
            self._replayed.pop(old, None)
            self._verify.discard(old)
            lock = self._locks.get(old)
            if lock is not None and not lock.locked():
                del self._locks[old]

    def _note_position(self, vehicle: str, t: int, speed, lat, lon) -> None:
        self._seen[vehicle] = max(t, self._seen.get(vehicle, t))
        if vehicle not in self._speed or t > self._speed[vehicle][0]:
            self._speed[vehicle] = (t, speed, lat, lon)

    # --- reading-driven rules -------------------------------------------------------------

    async def on_committed(self, rows: Iterable[StoredReading], now_ms: int) -> None:
        """Evaluate after a commit: never raises (alerts must not cost a vehicle its acks).

        The tick's vehicles whose readings change no alert are evaluated together in place
        (`_quiet_tick`, no task switch, no store call); the others one by one as before."""
        await self._tick(rows, now_ms)
        await self._flush_if_due(now_ms)

    async def _tick(self, rows: Iterable[StoredReading], now_ms: int) -> None:
        slow, saves = self._quiet_tick(rows, now_ms)
        for vehicle, step in saves:
            await self._save_live(vehicle, step, now_ms)
        if slow:
            await self._evaluate_many(sorted(slow), _PENDING, now_ms)

    async def _save_live(self, vehicle: str, step: _Step, now_ms: int) -> None:
        """A tick's live step that changes alerts: written under the vehicle's lock (its cache
        was taken out with the step, so nothing evaluates from a state not yet saved)."""
        async with self._locks.setdefault(vehicle, asyncio.Lock()):
            self._busy.add(vehicle)
            try:
                await self._settle(vehicle, step, now_ms)
            except Exception as exc:
                self.stats["failures"] += 1
                log.warning("alert evaluation for %s failed: %s", vehicle, exc)
            finally:
                self._busy.discard(vehicle)

    def _quiet_tick(self, rows: Iterable[StoredReading], now_ms: int
                    ) -> tuple[list[str], list[tuple[str, _Step]]]:
        """Book the tick's rows per vehicle (newest time and position) and evaluate every
        vehicle whose state is cached and newer readings only (live) in one pass, without a
        task switch: quiet readings (backend/alerts/quiet.py: no alert can change, no
        checkpoint due) change the cached state in place, others run the evaluator. Returns
        the vehicles left for `_evaluate_safely` (a replay, or one being evaluated), their
        rows waiting in `_rows` (no await between the commit and this mark), and the live
        steps that change alerts (to save)."""
        rows = rows if isinstance(rows, list) else list(rows)
        # at 1 Hz nearly every vehicle has one row in a tick: then no lists are made
        one: dict[str, StoredReading] = {r.vehicle_id: r for r in rows}
        by_vehicle: dict[str, list[StoredReading]] | dict[str, StoredReading] = one
        grouped = len(one) != len(rows)
        if grouped:
            by_vehicle = {}
            for r in rows:
                mine = by_vehicle.get(r.vehicle_id)
                if mine is None:
                    by_vehicle[r.vehicle_id] = [r]
                else:
                    mine.append(r)
        cache, pending, waiting, replayed, locks = (self._cache, self._pending, self._rows,
                                                    self._replayed, self._locks)
        seen, speeds, stats, every = self._seen, self._speed, self.stats, self.checkpoint_every_ms
        quiet = self._quiet_rules()
        slow: list[str] = []
        saves: list[tuple[str, _Step]] = []
        held = self._held
        # the common case first: a cached vehicle's next reading, quiet (`QuietRules.feed_one`);
        # vehicles in any other bookkeeping, or under evaluation, take the full path below
        special = self._busy
        if pending or waiting or replayed or held or self._verify:
            special = set(special)
            special.update(pending, waiting, replayed, held, self._verify)
        feed_one = quiet.feed_one
        gap_ok = self.hold_gap is None or self.hold_gap >= 1
        inside_of = None
        if quiet.fences and not grouped:  # the tick's positions tested together per geofence
            points = [r for r in rows if r.kind == "pos" and r.lat is not None
                      and r.lon is not None]
            inside_of = dict(zip([r.vehicle_id for r in points], quiet.inside_many(
                [r.lat for r in points], [r.lon for r in points]), strict=True))
        settled = 0
        for vehicle, mine in by_vehicle.items():  # type: ignore[assignment]
            r = mine if not grouped else mine[0] if len(mine) == 1 else None
            if r is not None:
                c = cache.get(vehicle)
                if (c is not None and r.epoch == c.epoch and r.seq == c.seq + 1 and gap_ok
                        and r.time_ms > c.end and c.last_cp is not None
                        and vehicle not in special):
                    try:
                        done = feed_one(c.state, r, c.last_cp + every,
                                        None if inside_of is None else inside_of.get(vehicle))
                    except Exception:  # the evaluator meets it again, and reports it
                        done = False
                    t = r.time_ms
                    last = seen.get(vehicle)
                    if last is None or t > last:
                        seen[vehicle] = t
                    if r.kind == "pos" and r.lat is not None:
                        known = speeds.get(vehicle)
                        if known is None or t > known[0]:
                            speeds[vehicle] = (t, r.speed_kmh, r.lat, r.lon)
                    if done:
                        c.end, c.seq = t, r.seq
                        settled += 1
                    else:  # it might change an alert: the evaluator decides
                        self._live_in_tick(vehicle, c, [r], now_ms, saves)
                    continue
                mine = [r]
            if len(mine) == 1:
                top = mine[0]
                t0 = newest = top.time_ms
                if top.kind != "pos" or top.lat is None:
                    top = None
            else:
                times = [r.time_ms for r in mine]
                t0, newest = min(times), max(times)
                top = None  # its newest position (the first of that time, as one by one keeps)
                for r in mine:
                    if r.kind == "pos" and r.lat is not None and (top is None
                                                                  or r.time_ms > top.time_ms):
                        top = r
            last = seen.get(vehicle)
            if last is None or newest > last:
                seen[vehicle] = newest
            if top is not None:
                known = speeds.get(vehicle)
                if known is None or top.time_ms > known[0]:
                    speeds[vehicle] = (top.time_ms, top.speed_kmh, top.lat, top.lon)
            c = cache.get(vehicle)
            if c is not None and c.epoch is not None:
                # sent again after a lost ack and already in the state: nothing to evaluate
                # (its time is behind the state's: it would replay from a checkpoint)
                if len(mine) == 1:
                    r = mine[0]
                    if r.epoch == c.epoch and c.low <= r.seq <= c.seq and (
                            c.holes is None or r.seq not in c.holes):
                        stats["repeats"] += 1
                        continue
                else:
                    span = c.span()
                    new = [r for r in mine if not includes(span, r.epoch, r.seq)]
                    if len(new) < len(mine):
                        stats["repeats"] += len(mine) - len(new)
                        if not new:
                            continue
                        mine = new
                        times = [r.time_ms for r in mine]
                        t0, newest = min(times), max(times)
            if c is not None and c.epoch is not None and self.hold_gap is not None and (
                    vehicle in held or len(mine) > 1 or mine[0].epoch != c.epoch
                    or mine[0].seq > c.seq + self.hold_gap):
                mine = self._hold(vehicle, c, mine, now_ms)
                if not mine:
                    continue
                t0, newest = mine[0].time_ms, mine[-1].time_ms  # in reading order
            if (c is not None and t0 > c.end and c.last_cp is not None
                    and vehicle not in pending and vehicle not in waiting
                    and vehicle not in replayed and vehicle not in self._verify):
                lock = locks.get(vehicle)
                if lock is None or not lock.locked():
                    try:
                        done = quiet.feed(c.state, mine, c.last_cp + every)
                    except Exception:  # the evaluator meets it again, and reports it
                        done = False
                    if done:
                        c.end = newest
                        top = mine[0]
                        if len(mine) == 1 and top.epoch == c.epoch and top.seq == c.seq + 1:
                            c.seq = top.seq  # the next one: the span only grows
                        else:
                            c.epoch, c.low, c.seq, c.holes = noted(
                                c.span(), [(r.epoch, r.seq) for r in mine])
                        stats["evaluations"] += 1
                        stats["readings_evaluated"] += len(mine)
                        stats["quiet_readings"] += len(mine)
                        continue
                    self._live_in_tick(vehicle, c, mine, now_ms, saves)
                    continue
            # keyed like the table: a re-delivered reading is evaluated once
            waiting.setdefault(vehicle, {}).update({(r.epoch, r.seq): r for r in mine})
            pending[vehicle] = min(t0, pending.get(vehicle, t0))
            slow.append(vehicle)
        if settled:
            stats["evaluations"] += settled
            stats["readings_evaluated"] += settled
            stats["quiet_readings"] += settled
        return slow, saves

    def _live_in_tick(self, vehicle: str, c: Cached, mine: list[StoredReading], now_ms: int,
                      saves: list[tuple[str, _Step]]) -> None:
        """A tick's live vehicle whose readings might change an alert: the evaluator's step
        from its cached state, cached at once when it changes no alert, else to save."""
        del self._cache[vehicle]  # its state changes in place: cached again once settled
        try:
            step = self._live_step(vehicle, c, mine)
        except Exception as exc:  # the next evaluation starts from the store
            self.stats["failures"] += 1
            log.warning("alert evaluation for %s failed: %s", vehicle, exc)
            return
        if step is not None and not self._settle_quietly(vehicle, step, now_ms):
            saves.append((vehicle, step))

    def _hold(self, vehicle: str, c: Cached, mine: list[StoredReading], now_ms: int
              ) -> list[StoredReading]:
        """The vehicle's rows to evaluate now (with those held before); rows more than
        HOLD_GAP past the highest sequence number evaluated or about to be wait (HOLD_GAP)."""
        since, rows = self._held.pop(vehicle, (now_ms, {}))
        before = set(rows)
        for r in mine:
            rows[(r.epoch, r.seq)] = r
        if now_ms - since >= HOLD_MS:
            return list(rows.values())
        ready, wait = [], {}
        chain = c.seq
        for key in sorted(rows):
            r = rows[key]
            # a row held before goes once the backlog reached it, and every row after it waits
            # with it (evaluated before the backlog below it, that would replay)
            if not wait and (r.epoch != c.epoch or r.seq <= chain + (
                    1 if key in before else self.hold_gap)):
                ready.append(r)
                if r.epoch == c.epoch and r.seq > chain:
                    chain = r.seq
            else:
                wait[key] = r
        if wait:
            self._held[vehicle] = (since, wait)
            self.stats["held"] += sum(1 for r in mine if (r.epoch, r.seq) in wait)
        ready.sort(key=reading_order)
        return ready

    async def _release_held(self, now_ms: int) -> None:
        """Evaluate the held rows that waited HOLD_MS (the timer: their vehicle sent nothing
        since)."""
        due = [v for v, (since, _) in self._held.items() if now_ms - since >= HOLD_MS]
        if due:
            await self._tick([r for v in due for r in self._held[v][1].values()], now_ms)

    def _quiet_rules(self) -> QuietRules:
        """The quiet check for the current rules and geofences (rebuilt when they change)."""
        q = self._quiet
        if q is None or q[0] is not self.fences or q[1] is not self.rules:
            self._quiet = q = (self.fences, self.rules,
                               QuietRules(self.rules, self.fences, self._speed_view))
        return q[2]

    async def _flush_if_due(self, now_ms: int) -> None:
        n = sum(map(len, self._deferred.values()))
        if n and (n >= FLUSH_MAX or now_ms - self._deferred_ms >= FLUSH_EVERY_MS):
            await self.flush()

    async def flush(self) -> None:
        """Write the deferred checkpoints (one transaction); the service calls it on stop.
        Never raises: a lost checkpoint costs a longer replay, not an alert."""
        async with self._flush_lock:
            points = [(v, t, s) for v, cps in self._deferred.items() for t, s in cps]
            self._deferred, self._deferred_ms = {}, None
            if not points:
                return
            try:
                await self.store.save_alert_checkpoints(points)
            except Exception as exc:
                self.stats["failures"] += 1
                log.warning("cannot write %d alert checkpoints: %s", len(points), exc)

    async def _discard_deferred(self, vehicle: str, after_ms: int | None) -> None:
        """A replay replaces the vehicle's checkpoints after `after_ms`: drop deferred ones
        there, after any flush in flight has committed (it could otherwise write them back)."""
        async with self._flush_lock:
            kept = [(t, s) for t, s in self._deferred.pop(vehicle, [])
                    if after_ms is not None and t <= after_ms]
            if kept:
                self._deferred[vehicle] = kept

    async def _evaluate_many(self, vehicles: list[str], t0, now_ms: int) -> None:
        """Evaluate `vehicles` (`t0`: _PENDING, each one's committed rows; None: the catch-up
        from each one's newest checkpoint). Those free to start now (their lock free, no
        cluster check due) go together, REPLAY_BATCH at a time (`_evaluate_together`); the
        others one by one after them (`_evaluate_safely`)."""
        locks = self._locks
        together: list[str] = []
        alone: list[str] = []
        for v in vehicles:
            lock = locks.setdefault(v, asyncio.Lock())
            (alone if lock.locked() or v in self._verify else together).append(v)
        for i in range(0, len(together), REPLAY_BATCH):
            group = together[i:i + REPLAY_BATCH]
            held = [locks.setdefault(v, asyncio.Lock()) for v in group]
            busy = self._busy
            try:
                for v, lock in zip(group, held, strict=True):  # an earlier group's evaluation
                    await lock.acquire()  # may have let another start
                    busy.add(v)
                await self._evaluate_together(group, t0, now_ms)
            finally:
                for v, lock in zip(group, held, strict=True):
                    if v in busy:
                        busy.discard(v)
                        lock.release()
        for v in alone:
            await self._evaluate_safely(v, t0, now_ms)

    def _take(self, vehicle: str, t0) -> tuple[int | None, list[StoredReading]] | None:
        """Under the vehicle's lock: (the earliest time to evaluate from, its committed rows
        not yet evaluated), or None when there is nothing to do."""
        if t0 is _PENDING:
            # batches that committed while another evaluation ran are evaluated together;
            # none left: an evaluation that started after our commit already read them
            if vehicle not in self._pending:
                return None
            t0 = self._pending.pop(vehicle)
        fresh = list(self._rows.pop(vehicle, {}).values())
        done = self._replayed.pop(vehicle, None)
        if done and t0 is not None:  # committed before the last replay read them
            fresh = [r for r in fresh if (r.epoch, r.seq) not in done]
            if not fresh:
                return None
            t0 = min(r.time_ms for r in fresh)
        return t0, fresh

    def _failed(self, vehicle: str, exc: BaseException) -> None:
        """An evaluation failed: the vehicle's next one starts from the store."""
        self._cache.pop(vehicle, None)
        self.stats["failures"] += 1
        log.warning("alert evaluation for %s failed: %s", vehicle, exc)

    async def _evaluate_safely(self, vehicle: str, t0, now_ms: int) -> None:
        lock = self._locks.setdefault(vehicle, asyncio.Lock())
        async with lock:
            taken = self._take(vehicle, t0)
            if taken is None:
                return
            t0, fresh = taken
            self._busy.add(vehicle)
            try:
                await self._evaluate(vehicle, t0, now_ms, fresh)
            except Exception as exc:
                self._failed(vehicle, exc)
            except BaseException:
                self._cache.pop(vehicle, None)
                raise
            finally:
                self._busy.discard(vehicle)

    async def _evaluate_together(self, vehicles: list[str], t0, now_ms: int) -> None:
        """`_evaluate` of vehicles whose locks the caller holds: the live ones each at once,
        the replays with their store state loaded for all of them (`_replay_together`)."""
        replays: list[tuple[str, int | None, Cached | None, list[StoredReading]]] = []
        for vehicle in vehicles:
            taken = self._take(vehicle, t0)
            if taken is None:
                continue
            start, fresh = taken
            cached = self._cache.get(vehicle)
            if cached is None or start is None or start <= cached.end:
                replays.append((vehicle, start, cached, fresh))
                continue
            try:
                await self._live(vehicle, cached, fresh, now_ms)
            except Exception as exc:
                self._failed(vehicle, exc)
        if not replays:
            return
        try:
            await self._replay_together(replays, now_ms)
        except BaseException as exc:
            for vehicle, _, _, _ in replays:
                self._cache.pop(vehicle, None)
            if not isinstance(exc, Exception):
                raise
            self.stats["failures"] += len(replays)
            log.warning("alert evaluation for %d vehicles (%s, …) failed: %s", len(replays),
                        replays[0][0], exc)

    async def _replay_together(self, replays: list[tuple[str, int | None, Cached | None,
                                                         list[StoredReading]]],
                               now_ms: int) -> None:
        """The replay part of `_evaluate` for many vehicles: one store read per kind for all
        of them, one transaction for what they changed. The committed rows the engine holds
        (`fresh`) are not read back: the store returns the others (`_replay_reads`)."""
        store = self.store
        cps = await store.alert_checkpoints_before([(v, t) for v, t, _, _ in replays])
        todo = [(v, cps.get(v), cached, fresh) for v, t, cached, fresh in replays
                if cps.get(v) is not None or t is not None]  # catch-up, never evaluated: the
        if not todo:                                        # next batch evaluates everything
            return
        bases = [(v, cp[0] if cp else None) for v, cp, _, _ in todo]
        readings_of = await self._replay_reads(bases, {v: fresh for v, _, _, fresh in todo})
        windows = await store.alerts_in_windows(bases)
        steps: list[tuple[str, _Step, set[tuple[int, int]]]] = []
        for vehicle, cp, cached, _ in todo:
            base, state = cp if cp else (None, None)
            self.stats["replays"] += 1
            readings = readings_of.get(vehicle, [])
            self._drop_evaluated(vehicle, readings)
            if not readings and cached is not None:
                continue
            stored = {a.key: a for a in windows.get(vehicle, [])}
            try:
                step = self._step(vehicle, readings, state, False, base, base, stored)
            except Exception as exc:
                self._failed(vehicle, exc)
                continue
            steps.append((vehicle, step, {(r.epoch, r.seq) for r in readings[-REPLAYED_KEYS:]}))
        if not steps:
            return
        for vehicle, step, _ in steps:
            await self._discard_deferred(vehicle, step.base)
        saved = await store.save_alerts_many(
            [(step.upserts, step.retract, (vehicle, step.base, step.points), step.moves)
             for vehicle, step, _ in steps], now_ms)
        for (vehicle, step, replayed), changed in zip(steps, saved, strict=True):
            if step.end is not None:
                self._cache[vehicle] = Cached(step.end, step.state, step.last_cp, step.window,
                                              step.span)
                self._replayed[vehicle] = replayed
            self._published(changed)

    async def _replay_reads(self, bases: list[tuple[str, int | None]],
                            fresh: dict[str, list[StoredReading]]
                            ) -> dict[str, list[StoredReading]]:
        """Each vehicle's readings after its base, by `(time, epoch, seq)`: what the store
        holds after it, where the longest run of sequence numbers among the vehicle's `fresh`
        rows (committed, handed to `on_committed`, so stored) is not read back but taken from
        them (`as_read_back`: as the store would return them). A fleet's first evaluations
        read back only what they do not hold (on PostgreSQL that read cost the server as much
        as the COPY of the same rows in a storm). Rows outside the run come from the store, so
        the readings are those of a full read."""
        runs = {}
        for vehicle, _ in bases:
            run = longest_run((r.epoch, r.seq) for r in fresh.get(vehicle, ()))
            if run is not None:
                runs[vehicle] = run
        stored = await self.store.alert_readings_after(bases, runs)
        self.stats["read_back"] += sum(map(len, stored.values()))
        if not runs:
            return stored
        read_back = self._read_back
        out = {}
        for vehicle, base in bases:
            readings = stored.get(vehicle, [])
            run = runs.get(vehicle)
            if run is not None:
                e, low, high = run
                readings = readings + [
                    read_back(r) for r in fresh[vehicle]
                    if r.epoch == e and low <= r.seq <= high and (base is None or r.time_ms > base)]
                readings.sort(key=reading_order)
            if readings:
                out[vehicle] = readings
        return out

    async def _live(self, vehicle: str, cached: Cached, fresh: list[StoredReading],
                    now_ms: int) -> None:
        """Live: every committed reading after the cached state is in `fresh` (taken with its
        time); the cached state is handed over (a failed evaluation drops the cache): two deep
        copies per batch were ~10 % of the gateway's CPU at 1 Hz."""
        step = self._live_step(vehicle, cached, fresh)
        if step is not None and not self._settle_quietly(vehicle, step, now_ms):
            await self._settle(vehicle, step, now_ms)

    async def _evaluate(self, vehicle: str, t0: int | None, now_ms: int,
                        fresh: list[StoredReading] = ()) -> None:
        cached = self._cache.get(vehicle)
        if cached is not None and vehicle in self._verify:
            self._verify.discard(vehicle)
            mine = {(r.epoch, r.seq) for r in fresh}
            if any((r.epoch, r.seq) not in mine
                   for r in await self.store.alert_readings(vehicle, cached.end)):
                self._cache.pop(vehicle, None)  # another process evaluated it meanwhile
                cached = None
        if cached is not None and t0 is not None and t0 > cached.end:
            await self._live(vehicle, cached, fresh, now_ms)
            return
        cp = await self.store.alert_checkpoint(vehicle, t0)
        if cp is None and t0 is None:
            return  # catch-up, but never evaluated: its next batch evaluates everything
        base, state = cp if cp else (None, None)
        self.stats["replays"] += 1
        readings = (await self._replay_reads([(vehicle, base)], {vehicle: list(fresh)})
                    ).get(vehicle, [])
        self._drop_evaluated(vehicle, readings)
        replayed = {(r.epoch, r.seq) for r in readings[-REPLAYED_KEYS:]}
        if not readings and cached is not None:
            return
        stored = {a.key: a for a in await self.store.alerts_in_window(vehicle, base)}
        step = self._step(vehicle, readings, state, False, base, base, stored)
        await self._settle(vehicle, step, now_ms)
        if step.end is not None:
            self._replayed[vehicle] = replayed

    def _live_step(self, vehicle: str, c: Cached, fresh: Iterable[StoredReading]
                   ) -> _Step | None:
        """The live evaluation of `fresh` (all newer than `c.end`) from the cached state,
        which it changes in place; None when there is nothing to evaluate."""
        read_back = self._read_back
        readings = [read_back(r) for r in fresh]
        if not readings:
            return None
        return self._step(vehicle, readings, c.state, True, c.end, c.last_cp, c.window,
                          c.span())

    def _step(self, vehicle: str, readings: list[StoredReading], state: dict | None,
              live: bool, base: int | None, last_cp: int | None,
              stored: dict[tuple, object], span: Span = NOTHING) -> _Step:
        """Fold `readings` into `state` (from `base`, the newest checkpoint at `last_cp`, which
        includes the readings of `span`): the checkpoints due, the episodes, and what to write
        against the `stored` alerts."""
        self.stats["evaluations"] += 1
        self.stats["readings_evaluated"] += len(readings)
        ev = Evaluator(vehicle, self.rules, self.fences, state, owned=live)
        points: list[tuple[int, dict]] = []
        readings = sorted(readings, key=reading_order)
        times = [r.time_ms for r in readings]
        end = times[-1] if times else base
        # fed in runs between checkpoints; a checkpoint at t covers every reading of time t:
        # after the first device time, then after the first at least checkpoint_every_ms on
        i, n = 0, len(readings)
        while i < n:
            due = times[i] if last_cp is None else last_cp + self.checkpoint_every_ms
            j = bisect.bisect_left(times, due, i)
            if j == n:
                ev.feed_all(readings[i:])
                break
            t = times[j]
            k = bisect.bisect_right(times, t, j)
            ev.feed_all(readings[i:k])
            points.append((t, ev.state()))
            last_cp, i = t, k
        episodes = {e.key: e for e in ev.episodes()}
        upserts, moves, retract = reconcile(stored, episodes)  # type: ignore[arg-type]
        # after the save the window's stored alerts are the episodes; the next live window
        # (open, or decided after `end`) is those of them (reconcile compares only their fields)
        window = {} if end is None else {k: e for k, e in episodes.items()
                                         if e.end_ms is None or e.decided_ms > end}
        step = _Step(live, base, end, ev.take_state(), last_cp, points, window, upserts,
                     moves, retract)
        step.span = noted(span, [(r.epoch, r.seq) for r in readings])
        return step

    def _settle_quietly(self, vehicle: str, step: _Step, now_ms: int) -> bool:
        """A live step that changes no alert: its checkpoints wait for the next flush and the
        vehicle's state is cached; no store call. False: it needs `_settle`."""
        if not step.live or step.upserts or step.moves or step.retract:
            return False
        if step.points:
            self._deferred.setdefault(vehicle, []).extend(step.points)
            if self._deferred_ms is None:
                self._deferred_ms = now_ms
        self._cache[vehicle] = Cached(step.end, step.state, step.last_cp, step.window,
                                      step.span)
        return True

    async def _settle(self, vehicle: str, step: _Step, now_ms: int) -> None:
        """Write what a step changed (a replay always replaces the checkpoints after its base),
        then cache its state and publish the changed alerts."""
        if not step.live:
            await self._discard_deferred(vehicle, step.base)
        saved = await self.store.save_alerts(step.upserts, step.retract, now_ms,
                                             (vehicle, step.base, step.points), step.moves)
        if step.end is not None:
            self._cache[vehicle] = Cached(step.end, step.state, step.last_cp, step.window,
                                      step.span)
        self._published(saved)

    def _drop_evaluated(self, vehicle: str, readings: list[StoredReading]) -> None:
        """Rows committed during a replay that its store read returned are evaluated by it:
        left waiting, each made the next evaluation a replay too (at 1 Hz under load, a
        cascade of replays: four store calls per batch instead of none)."""
        held = self._held.get(vehicle)
        if held is not None:
            for r in readings:
                held[1].pop((r.epoch, r.seq), None)
            if not held[1]:
                del self._held[vehicle]
        waiting = self._rows.get(vehicle)
        if not waiting:
            return
        for r in readings:
            waiting.pop((r.epoch, r.seq), None)
        if waiting:
            self._pending[vehicle] = min(r.time_ms for r in waiting.values())
        else:
            self._rows.pop(vehicle, None)
            self._pending.pop(vehicle, None)

    def _published(self, saved: list[tuple[StoredAlert, bool]]) -> None:
        for alert, created in saved:
            if created:
                self.stats["alerts_opened"][alert.rule] += 1
            try:
                self.publish(alert.as_json())
            except Exception as exc:  # a hub problem must not undo stored alerts
                log.warning("cannot publish alert %d: %s", alert.id, exc)

    # --- clock-driven rules ---------------------------------------------------------------

    async def on_timer(self, now_ms: int, connected: Iterable[str]) -> None:
        """Stale (no reading for N s while not parked) and offline (no connection for N s)."""
        try:
            await self._on_timer(now_ms, set(connected))
        except Exception as exc:
            self.stats["failures"] += 1
            log.warning("alert timer failed: %s", exc)

    async def _on_timer(self, now_ms: int, connected: set[str]) -> None:
        if self._refreshed_ms is None or now_ms - self._refreshed_ms >= REFRESH_MS:
            await self._refresh(now_ms)
        if self._pruned_ms is None or now_ms - self._pruned_ms >= PRUNE_EVERY_MS:
            self._pruned_ms = now_ms
            self.stats["checkpoints_pruned"] = self.stats.get("checkpoints_pruned", 0) + (
                await self.store.prune_alert_checkpoints(now_ms - CHECKPOINT_RETAIN_MS))
        await self._release_held(now_ms)
        if self.owners is None:  # one process: every vehicle is its own
            seen, vehicles = self._seen, self._known | connected
        else:
            seen, vehicles, connected = await self._owned(now_ms, connected)
        changes = stale_changes(self.rules.stale, now_ms, seen, self._speed, self._timed)
        changes += offline_changes(self.rules.offline, now_ms, vehicles,
                                   connected, self._connected_ms, self._started_ms,
                                   self._speed, self._timed)
        await self._flush_if_due(now_ms)
        if not changes:
            return
        if self.owners is None:
            saved = await self.store.save_alerts(changes, [], now_ms)
        else:  # only for vehicles still ours when saved (a hand-over may have come between)
            saved = await self.owners.save(changes, now_ms)
        for alert, _ in saved:
            key = (alert.rule, alert.vehicle_id)
            if alert.state == "open":
                self._timed[key] = alert
            else:
                self._timed.pop(key, None)
        self._published(saved)

    async def _owned(self, now_ms: int, holding: set[str]
                     ) -> tuple[dict[str, int], set[str], set[str]]:
        """The cluster's part of a timer round: this process's vehicles by the store
        (backend/cluster/owners.py) → (newest reading time, vehicles, connected) of the
        vehicles it owns. A lost vehicle's state here stops; a gained one resumes from the
        store (its newest position and its open clock-driven alerts)."""
        owned, gained, lost = await self.owners.sync(now_ms, holding)
        for vehicle in lost:
            for rule in _CLOCK_RULES:
                self._timed.pop((rule, vehicle), None)
            self._connected_ms.pop(vehicle, None)
            self.forget(vehicle)
        if gained:
            await self._resume(gained)
        connected = {v for v, (c, _) in owned.items() if c}
        for v, (c, since) in owned.items():
            if not c:
                self._connected_ms[v] = since  # the store's: survives a hand-over
        seen = {v: t for v, t in self._seen.items() if v in owned}
        vehicles = (owned.keys() & self._known) | connected
        return seen, vehicles, connected

    async def _resume(self, vehicles: set[str]) -> None:
        for v in vehicles:
            for rule in _CLOCK_RULES:
                self._timed.pop((rule, v), None)
        for a in await self.store.list_alerts(AlertQuery(vehicles=frozenset(vehicles),
                                                         state="open", limit=OPEN_LIMIT)):
            if a.rule in _CLOCK_RULES:
                self._timed[(a.rule, a.vehicle_id)] = a
        for p in await self.store.last_positions():
            if p["vehicle_id"] in vehicles:
                self._note_position(p["vehicle_id"], p["time_ms"], p["speed_kmh"], p["lat"],
                                    p["lon"])


class NoAlerts:
    """Stand-in where no rules run (tests and benchmarks that build a bare Gateway)."""

    stats: dict = {}

    async def on_committed(self, rows, now_ms: int) -> None:
        return None

    def forget(self, vehicle: str) -> None:
        return None

    def reconnected(self, vehicle: str) -> None:
        return None

    def disconnected(self, vehicle: str) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def geofences_changed(self) -> None:
        return None
