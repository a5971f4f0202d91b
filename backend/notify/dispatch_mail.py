"""The customer's dispatch mail (docs/customers.md, "The dispatch mail"): when a job with a
contact e-mail is dispatched (it is on a route whose status is dispatched or active), a
tracking link is made for it and its URL is e-mailed to the contact, once per job, through
the outbox like every notification, when an admin turned it on for the job's vehicle (a
subscription of channel `customer`, for a group or the whole fleet; none: off).

Source: `job_transitions` by seq, its own cursor `customer_mail`. A job assigned to a draft
route waits (in memory) until the route is dispatched; the stored cursor stays before the
oldest waiting transition, so a restart finds it again. The event id is `link.<job id>`
whatever route or subscription carried it: before making a link the outbox is asked for it,
so a re-plan that takes the job off a route and dispatches it on another sends nothing new.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from dataclasses import dataclass
from email.message import EmailMessage

from ..dispatch.model import JobRecord, JobState, Route, RouteStatus
from ..links.model import MAX_LINKS_PER_JOB, TrackingLink, hash_token, new_link_id, new_token
from .channels import Outcome
from .subscriptions import CUSTOMER, Subscription, check_email

log = logging.getLogger(__name__)

CURSOR = "customer_mail"
EVENT_PREFIX = "link."  # the event id's prefix: `link.<job id>`
EVENT_TYPE = "job.link"
LINK_MAKER = "notify:customer"  # the links' `created_by`
# Transitions read per batch, batches per round (a backlog is caught up in one round).
BATCH = 500
MAX_BATCHES = 200
# Read again behind the cursor: PostgreSQL hands out seq before commit (as the notifier).
LOOKBACK = 200
# Jobs waiting for their draft route to be dispatched: older ones are forgotten (a draft
# left for a week is not today's dispatch), and at most this many (the oldest go first).
MAX_WAIT_MS = 7 * 24 * 3600 * 1000
MAX_WAITING = 20_000
SEEN = 4 * LOOKBACK + BATCH  # transition seqs remembered as handled
_ON_ROUTE = frozenset({JobState.ASSIGNED, JobState.EN_ROUTE, JobState.ARRIVED})
_LIVE = frozenset({RouteStatus.DISPATCHED, RouteStatus.ACTIVE})


class Decision(enum.Enum):
    SEND = "send"
    WAIT = "wait"  # its route is a draft
    DROP = "drop"  # never for this transition (a later assignment is a new one)


def decide(rec: JobRecord | None, route: Route | None, route_id: str) -> Decision:
    """Pure: the job assigned to `route_id` now, given its record and that route."""
    if rec is None or route is None or rec.route_id != route_id or rec.state not in _ON_ROUTE:
        return Decision.DROP
    if not rec.job.contact.email:
        return Decision.DROP
    if route.status is RouteStatus.DRAFT:
        return Decision.WAIT
    return Decision.SEND if route.status in _LIVE else Decision.DROP


def carrier(subs, vehicle: str, known_ms: int) -> Subscription | None:
    """Pure: the customer subscription that covers `vehicle` (its group's, or the fleet's),
    made before the assignment was recorded; the oldest when several do."""
    fit = [s for s, seen in subs if s.channel == CUSTOMER and s.created_ms <= known_ms
           and (seen is None or vehicle in seen)]
    return min(fit, key=lambda s: s.id) if fit else None


def event_id(job_id: str) -> str:
    return EVENT_PREFIX + job_id


@dataclass
class _Waiting:
    seq: int
    route_id: str
    known_ms: int


class DispatchMails:
    """The async edge: run once per notifier round by the lease holder."""

    def __init__(self, store, public_url: str):
        self.store = store
        self.public_url = public_url
        self.waiting: OrderedDict[str, _Waiting] = OrderedDict()  # job id → its assignment
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._high: int | None = None  # the newest seq read (None: from the stored cursor)

    async def round(self, subs, now_ms: int) -> int:
        """Read new transitions, send what is due; how many mails were put in the outbox."""
        if self._high is None:
            self._high = await self.store.notify_cursor(CURSOR)
        for _ in range(MAX_BATCHES):
            batch = await self.store.transitions_after(max(0, self._high - LOOKBACK), BATCH)
            for seq, t in batch:
                if seq in self._seen:
                    continue
                self._seen[seq] = None
                if t.to_state is JobState.ASSIGNED and t.route_id is not None:
                    self.waiting.pop(t.job_id, None)
                    self.waiting[t.job_id] = _Waiting(seq, t.route_id, t.recorded_ms)
            while len(self._seen) > SEEN:
                self._seen.popitem(last=False)
            if batch:
                self._high = max(self._high, batch[-1][0])
            if len(batch) < BATCH:
                break
        while len(self.waiting) > MAX_WAITING:
            self.waiting.popitem(last=False)
        rows = await self._resolve(subs, now_ms)
        first = min((w.seq for w in self.waiting.values()), default=self._high + 1)
        return await self.store.enqueue_notifications(rows, now_ms,
                                                      (CURSOR, min(self._high, first - 1)))

    async def _resolve(self, subs, now_ms: int) -> list[tuple[int, str, dict, int]]:
        customers = [(s, seen) for s, seen in subs if s.channel == CUSTOMER]
        routes: dict[str, Route | None] = {}
        rows = []
        for job_id, w in list(self.waiting.items()):
            if now_ms - w.known_ms > MAX_WAIT_MS or not customers:
                del self.waiting[job_id]  # nobody turned it on: nothing to wait for
                continue
            if w.route_id not in routes:
                routes[w.route_id] = await self.store.dispatch_route(w.route_id)
            route = routes[w.route_id]
            if route is not None and route.status is RouteStatus.DRAFT:
                continue  # the job's record is read once the route is out
            rec = await self.store.job(job_id)
            verdict = decide(rec, route, w.route_id)
            if verdict is Decision.WAIT:
                continue
            del self.waiting[job_id]
            if verdict is Decision.DROP or rec is None or route is None:
                continue
            sub = carrier(customers, route.vehicle_id, w.known_ms)
            if sub is None or await self.store.outbox_has(event_id(job_id)):
                continue
            payload = await self._link(rec, route, sub, now_ms)
            if payload is not None:
                rows.append((sub.id, payload["id"], payload, sub.due_ms(now_ms)))
        return rows

    async def _link(self, rec: JobRecord, route: Route, sub: Subscription,
                    now_ms: int) -> dict | None:
        """A new link for the job and the mail's payload (which holds its token until sent)."""
        token = new_token()
        link = TrackingLink(new_link_id(), hash_token(token), rec.job.id, now_ms, LINK_MAKER)
        if not await self.store.add_link(link, MAX_LINKS_PER_JOB):
            log.warning("dispatch mail of job %s: it has %d live links already", rec.job.id,
                        MAX_LINKS_PER_JOB)
            return None
        return {"id": event_id(rec.job.id), "type": EVENT_TYPE, "time_ms": now_ms,
                "subscription": sub.id, "vehicle": route.vehicle_id, "job": rec.job.id,
                "route": route.id, "link": link.id, "to": rec.job.contact.email,
                "name": rec.job.name, "url": f"{self.public_url}/t/{token}"}


class DispatchMailChannel:
    """Sends a dispatch mail's payload to its customer through the e-mail channel's SMTP
    server (backend/notify/channels.py EmailChannel)."""

    def __init__(self, email):
        self.email = email

    async def send(self, sub: Subscription, payload: dict, now_ms: int) -> Outcome:
        import asyncio

        msg = EmailMessage()
        msg["From"] = self.email.settings.sender
        msg["To"] = check_email(payload["to"])
        what = f" ({payload['name']})" if payload.get("name") else ""
        msg["Subject"] = f"Your delivery{what} is on its way: follow it live"
        msg["X-Fleet-Event-Id"] = payload["id"]
        msg.set_content(
            f"Your delivery{what} has been dispatched.\n\n"
            f"Follow it here, no login needed:\n{payload['url']}\n\n"
            "The page shows its status, the expected arrival time and, while the vehicle is\n"
            "on its way to you, where it is. The link stops working a day after the\n"
            "delivery is done.\n")
        return await asyncio.to_thread(self.email.deliver, msg)
