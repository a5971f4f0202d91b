"""The notifier, the async edge (docs/notifications.md): once per cluster (the lease `notify`
in the store), read new job transitions and alerts by cursor, turn them into outbox rows for
the subscriptions that want them, and deliver the due rows through their channels, retrying
with backoff. ETA changes come from this node's live ETAs (`on_eta`) straight to the outbox.

Why nothing is lost: an event becomes outbox rows and the cursor moves past it in one
transaction; a row leaves `pending` only after its channel said yes (or gave up for good). A
kill -9 between a receiver's yes and our commit sends that row again: delivery is at least
once, and the event id (the same on every attempt and node) lets the receiver deduplicate.

PostgreSQL hands out `seq`/`id` values before commit, so a row can become visible after a
higher one was read; each read starts LOOKBACK rows behind the cursor (rows already handled
are remembered and skipped), and the outbox's unique key makes a repeat a no-op."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable

from geostream.clock import wall_ms

from . import events as ev
from .channels import Outcome
from .dispatch_mail import DispatchMails
from .settings import NotifySettings
from .subscriptions import Subscription, digest_id

log = logging.getLogger(__name__)

LEASE = "notify"
# A holder that stopped renewing (a crash, a partition) hands the work over after this long.
# A node restarted on the same host and port takes its own lease back at once (its `node`).
LEASE_S = 15.0
# Rows read from an event source per round (the rest next round, at once).
SOURCE_BATCH = 500
# Batches read per round at most (SOURCE_BATCH each): a backlog of 100,000 rows in one round.
MAX_BATCHES = 200
# Rows re-read behind each cursor (see the module): more than the transitions or alerts that
# can be in flight (allocated, not yet committed) at once.
LOOKBACK = 200
# Outbox rows delivered per round.
DELIVER_BATCH = 200
# Subscriptions delivered to at once (each one's rows one at a time, oldest due first).
PARALLEL = 8
# Retries: 5 s, 10 s, 20 s … up to an hour; given up after MAX_ATTEMPTS (about 4 hours).
RETRY_MIN_S = 5.0
RETRY_MAX_S = 3600.0
MAX_ATTEMPTS = 12
# Routes remembered for their vehicle (a job event names its route; the vehicle decides who
# may see it).
ROUTE_CACHE = 4096


def retry_at_ms(now_ms: int, attempts_before: int, min_s: float = RETRY_MIN_S,
                max_s: float = RETRY_MAX_S) -> int:
    """When to try again after the (attempts_before + 1)-th failure: min·2ⁿ, capped."""
    return now_ms + int(min(max_s, min_s * 2 ** min(attempts_before, 30)) * 1000)


class EtaWatch:
    """Pure: per (subscription, job) the ETA last told; a new ETA that moved by the
    subscription's minutes or more is an `eta_changed` event (the first one seen is the
    baseline). Lost on restart: the first ETA after it is the new baseline."""

    def __init__(self, limit: int = 100_000):
        self._told: OrderedDict[tuple[int, str], int] = OrderedDict()
        self.limit = limit

    def observe(self, sub: Subscription, job: str, route: str | None, vehicle: str,
                eta_ms: int, now_ms: int) -> ev.Event | None:
        key = (sub.id, job)
        before = self._told.get(key)
        if before is None:
            self._remember(key, eta_ms)
            return None
        if abs(eta_ms - before) < sub.eta_change_min * 60_000:
            return None
        self._remember(key, eta_ms)
        return ev.eta_changed(job, route, vehicle, eta_ms, before, now_ms)

    def _remember(self, key, eta_ms: int) -> None:
        self._told[key] = eta_ms
        self._told.move_to_end(key)
        while len(self._told) > self.limit:
            self._told.popitem(last=False)


class Notifier:
    """`channels`: channel name → object with `async send(sub, payload, now_ms) -> Outcome`."""

    def __init__(self, store, settings: NotifySettings, channels: dict,
                 node: str | None = None, clock: Callable[[], int] = wall_ms,
                 retry_min_s: float | None = None, lease_s: float = LEASE_S):
        self.store = store
        self.settings = settings
        self.channels = channels
        self.node = node or uuid.uuid4().hex
        self.clock = clock
        self.retry_min_s = settings.retry_min_s if retry_min_s is None else retry_min_s
        self.lease_ms = int(lease_s * 1000)
        self.stats: Counter = Counter()
        self.etas = EtaWatch()
        self._seen: dict[str, OrderedDict[int, None]] = {"job_transitions": OrderedDict(),
                                                         "alerts": OrderedDict()}
        self._routes: OrderedDict[str, str | None] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.leader = False
        self._report_failures = 0
        self._report_retry_ms = 0
        self.dispatch_mails = (DispatchMails(store, settings.public_url)
                               if "customer" in channels else None)

    # --- the loop --------------------------------------------------------------------------

    def start(self, node: str | None = None) -> None:
        if node is not None:
            self.node = node
        self._task = asyncio.get_running_loop().create_task(self._run(), name="notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.leader:
            try:
                await self.store.release_lease(LEASE, self.node)
            except Exception as exc:  # it expires by itself
                log.debug("cannot release the notify lease: %s", exc)
        for ch in self.channels.values():
            close = getattr(getattr(ch, "client", None), "close", None)
            if close is not None:
                await close()

    def wake(self) -> None:
        """Something new to send: do not wait for the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the store away: the next round tries again
                self.stats["failures"] += 1
                log.warning("notifications: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def tick(self) -> dict:
        """One round, if this node holds the lease: source, then deliver. Counts."""
        now = self.clock()
        self.leader = await self.store.take_lease(LEASE, self.node, now, self.lease_ms)
        if not self.leader:
            return {}
        subs = await self.subscriptions()
        added = await self.source(subs, now)
        if self.dispatch_mails is not None:
            mails = await self.dispatch_mails.round(subs, now)
            self.stats["dispatch_mails"] += mails
            added += mails
        delivered = await self.deliver(subs, self.clock())
        reported = await self.report(self.clock())
        return {"enqueued": added, **delivered, **({"reported": 1} if reported else {})}

    # --- scheduled reports -----------------------------------------------------------------

    async def report(self, now_ms: int) -> bool:
        """The configured report of the newest complete period, if not sent yet (the cursor
        `report` holds the end of the last one sent: a kill between sending and moving it
        sends it again, at least once as everything here)."""
        cfg = self.settings.report
        email = self.channels.get("email")
        if not cfg.configured or email is None or now_ms < self._report_retry_ms:
            return False
        from datetime import time as dtime

        from .report import report_period

        at = dtime(int(cfg.at[:2]), int(cfg.at[3:]))
        start, end = report_period(cfg.every, at, cfg.tz, now_ms)
        if await self.store.notify_cursor("report") >= end:
            return False
        try:
            await self._send_report(cfg, email, start, end)
        except Exception as exc:  # the SMTP server or the store away: later, backing off
            self._report_failures += 1
            self._report_retry_ms = retry_at_ms(now_ms, self._report_failures - 1,
                                                self.retry_min_s)
            self.stats["report_failures"] += 1
            log.warning("report of %d..%d not sent: %s", start, end, exc)
            return False
        self._report_failures = 0
        await self.store.enqueue_notifications([], now_ms, ("report", end))
        self.stats["reports"] += 1
        return True

    async def _send_report(self, cfg, email, start: int, end: int) -> None:
        from email.message import EmailMessage

        from .report import gather, render_csv, render_pdf

        vehicles = None
        if cfg.group:
            groups = {g["name"]: g for g in await self.store.groups()}
            vehicles = frozenset(groups.get(cfg.group, {}).get("vehicles", ()))
        rep = await gather(self.store, cfg.title, start, end, cfg.tz, vehicles)
        pdf, table = await asyncio.to_thread(lambda: (render_pdf(rep), render_csv(rep)))
        msg = EmailMessage()
        msg["From"] = email.settings.sender
        msg["To"] = ", ".join(cfg.to)
        msg["Subject"] = f"[fleet] {cfg.title} ({cfg.every})"
        msg["X-Fleet-Event-Id"] = f"report.{cfg.every}.{end}"
        total = rep.totals()
        msg.set_content(f"{cfg.title}: {len(rep.vehicles)} vehicles, "
                        f"{total.distance_km:.1f} km, {total.stops_done} stops done, "
                        f"{total.late} late, {total.failed} failed, {total.alerts} alerts.\n"
                        "The PDF and the CSV are attached.\n")
        stem = f"fleet-report-{end // 1000}"
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{stem}.pdf")
        msg.add_attachment(table, maintype="text", subtype="csv", filename=f"{stem}.csv")
        await asyncio.to_thread(email.send_message, msg)

    # --- who sees what ---------------------------------------------------------------------

    async def subscriptions(self) -> list[tuple[Subscription, frozenset[str] | None]]:
        """Each subscription with the vehicles whose events it may carry (None: all): its
        group's, or its owner's (all for a user who sees every vehicle; none when disabled)."""
        rows = await self.store.subscriptions()
        if not rows:
            return []
        users = {u["name"]: u for u in await self.store.users()}
        groups = {g["name"]: g for g in await self.store.groups()}
        out = []
        for row in rows:
            sub = Subscription.from_row(row)
            owner = users.get(sub.owner)
            if owner is None or owner.get("disabled"):
                continue
            if sub.group is not None:
                g = groups.get(sub.group)
                seen: frozenset[str] | None = frozenset(g["vehicles"] if g else ())
            elif owner.get("all_vehicles"):
                seen = None
            else:
                seen = frozenset(v for g in groups.values() if sub.owner in g["members"]
                                 for v in g["vehicles"])
            out.append((sub, seen))
        return out

    @staticmethod
    def rows_for(e: ev.Event, subs, now_ms: int) -> list[tuple[int, str, dict, int]]:
        """Outbox rows of one event: the subscriptions that want it and may see it."""
        out = []
        for sub, seen in subs:
            if seen is not None and (e.vehicle is None or e.vehicle not in seen):
                continue
            if sub.matches(e):
                payload = e.as_json()
                payload["subscription"] = sub.id
                out.append((sub.id, e.id, payload, sub.due_ms(now_ms)))
        return out

    # --- sources ---------------------------------------------------------------------------

    async def _vehicle_of(self, route_id: str | None) -> str | None:
        if route_id is None:
            return None
        if route_id not in self._routes:
            route = await self.store.dispatch_route(route_id)
            self._routes[route_id] = None if route is None else route.vehicle_id
            while len(self._routes) > ROUTE_CACHE:
                self._routes.popitem(last=False)
        return self._routes[route_id]

    def _fresh(self, source: str, key: int) -> bool:
        seen = self._seen[source]
        if key in seen:
            return False
        seen[key] = None
        while len(seen) > 4 * LOOKBACK + SOURCE_BATCH:
            seen.popitem(last=False)
        return True

    async def source(self, subs, now_ms: int) -> int:
        """New transitions and alerts → outbox rows, each source's cursor moved with them; a
        full batch is followed by the next at once (a backlog, or the history of a database
        that had no notifier yet, is caught up within one round)."""
        added = 0
        for _ in range(MAX_BATCHES):
            got, full = await self._source_once(subs, now_ms)
            added += got
            if not full:
                break
        self.stats["enqueued"] += added
        return added

    async def _source_once(self, subs, now_ms: int) -> tuple[int, bool]:
        added = 0
        cursor = await self.store.notify_cursor("job_transitions")
        batch = await self.store.transitions_after(max(0, cursor - LOOKBACK), SOURCE_BATCH)
        rows = []
        for seq, t in batch:
            if not self._fresh("job_transitions", seq):
                continue
            e = ev.from_transition(t, await self._vehicle_of(t.route_id))
            if e is not None:
                rows += self.rows_for(e, subs, now_ms)
        if batch:
            top = max(cursor, batch[-1][0])
            added += await self.store.enqueue_notifications(rows, now_ms,
                                                            ("job_transitions", top))
        cursor = await self.store.notify_cursor("alerts")
        alerts = await self.store.alerts_after(max(0, cursor - LOOKBACK), SOURCE_BATCH)
        rows = []
        for a in alerts:
            if not self._fresh("alerts", a.id):
                continue
            e = ev.from_alert(a)
            if e is not None:
                rows += self.rows_for(e, subs, now_ms)
        if alerts:
            added += await self.store.enqueue_notifications(rows, now_ms,
                                                            ("alerts", max(cursor, alerts[-1].id)))
        return added, SOURCE_BATCH in (len(batch), len(alerts))

    async def on_eta(self, message: dict) -> int:
        """A live ETA computation (the hub's `eta` payload, backend/dispatch/live_eta.py) on
        this node: ETA changes to the outbox (any node may add them; the key dedupes)."""
        now = self.clock()
        subs = [(s, seen) for s, seen in await self.subscriptions()
                if ev.ETA_CHANGED in s.events]
        vehicle = message.get("vehicle")
        rows = []
        for sub, seen in subs:
            if seen is not None and vehicle not in seen:
                continue
            for stop in message.get("stops", ()):
                if stop.get("eta_ms") is None:
                    continue
                e = self.etas.observe(sub, stop["job_id"], message.get("route_id"), vehicle,
                                      int(stop["eta_ms"]), now)
                if e is not None:
                    payload = e.as_json()
                    payload["subscription"] = sub.id
                    rows.append((sub.id, e.id, payload, sub.due_ms(now)))
        if not rows:
            return 0
        added = await self.store.enqueue_notifications(rows, now)
        self.wake()
        return added

    # --- delivery --------------------------------------------------------------------------

    async def deliver(self, subs, now_ms: int) -> dict:
        """Send the due outbox rows; one digest per digest subscription."""
        due = await self.store.due_notifications(now_ms, DELIVER_BATCH)
        by_sub: dict[int, list[dict]] = {}
        for row in due:
            by_sub.setdefault(row["subscription_id"], []).append(row)
        known = {s.id: s for s, _ in subs}
        gate = asyncio.Semaphore(PARALLEL)
        outcomes: list[tuple[int, bool, str, int | None]] = []

        async def one_subscription(sub_id: int, rows: list[dict]) -> None:
            sub = known.get(sub_id)
            async with gate:
                if sub is None:  # its owner disabled: kept until the owner is back or it goes
                    return
                if sub.digest != "off":
                    payload = {"id": digest_id(sub.id, [r["event_id"] for r in rows]),
                               "type": ev.DIGEST, "time_ms": now_ms, "subscription": sub.id,
                               "events": [r["event"] for r in rows]}
                    out = await self._send(sub, payload, now_ms)
                    outcomes.extend(self._outcome(r, out, now_ms) for r in rows)
                    return
                for r in rows:  # one at a time: a subscription's events in order
                    out = await self._send(sub, r["event"], now_ms)
                    outcomes.append(self._outcome(r, out, now_ms))

        await asyncio.gather(*(one_subscription(s, rows) for s, rows in by_sub.items()))
        if outcomes:
            await self.store.finish_notifications(outcomes, self.clock())
        counts = Counter("delivered" if o[1] else ("retry" if o[3] else "given_up")
                         for o in outcomes)
        self.stats.update(counts)
        return dict(counts)

    async def _send(self, sub: Subscription, payload: dict, now_ms: int) -> Outcome:
        channel = self.channels.get(sub.channel)
        if channel is None:
            return Outcome(False, f"channel {sub.channel} is not configured on this backend")
        try:
            return await channel.send(sub, payload, now_ms)
        except Exception as exc:  # a channel's bug must not stop the others
            log.exception("channel %s failed", sub.channel)
            return Outcome(False, f"internal error: {type(exc).__name__}")

    def _outcome(self, row: dict, out: Outcome, now_ms: int):
        attempts = row["attempts"] + 1
        if out.ok or not out.retry or attempts >= MAX_ATTEMPTS:
            detail = out.detail if out.ok or not out.retry else f"{out.detail}; given up"
            return (row["id"], out.ok, detail, None)
        return (row["id"], False, out.detail,
                retry_at_ms(now_ms, row["attempts"], self.retry_min_s))


def channels_of(settings: NotifySettings, resolve=None) -> dict:
    """The channels as configured: webhooks and Apprise always (through the egress guard),
    e-mail when an SMTP server is."""
    from .channels import AppriseChannel, EmailChannel, WebhookChannel
    from .dispatch_mail import DispatchMailChannel
    from .egress import EgressClient

    policy = settings.policy
    out: dict = {"webhook": WebhookChannel(EgressClient(policy, resolve)),
                 "apprise": AppriseChannel(policy)}
    if settings.smtp.configured:
        out["email"] = EmailChannel(settings.smtp)
    if settings.customer_mail:
        out["customer"] = DispatchMailChannel(out["email"])
    return out
