"""Shared pieces of the notification tests: jobs put on a route (their `job.dispatched`
transitions), a fake clock, and the webhook verifier written from docs/notifications.md alone
("Verifying a webhook"), not from the signing code."""

from __future__ import annotations

import hashlib
import hmac

from backend.dispatch.jobstate import JobMachine
from backend.dispatch.model import (
    Actor,
    ActorKind,
    Amounts,
    Job,
    JobState,
    Place,
    Point,
    Route,
    RouteStop,
    Shift,
)

PLANNER = Actor(ActorKind.RULE, "planner")
HERE = Place(Point(60.17, 24.94))
TOLERANCE_S = 300  # the documentation's 5 minutes


class FakeClock:
    def __init__(self, now_ms: int = 1_765_000_000_000):
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


async def dispatch_jobs(store, ids: list[str], route_id: str, vehicle: str, now_ms: int) -> None:
    """Jobs `ids` put on a new route of `vehicle`: one `assigned` transition each."""
    await store.add_jobs([Job(i, HERE, demand=Amounts.of(kg=1)) for i in ids], now_ms)
    route = Route(route_id, vehicle, Shift(1_000, 100_000), "dep", "dep", Amounts.of(kg=100),
                  stops=tuple(RouteStop(i) for i in ids))
    ts = [JobMachine(i, ()).request(JobState.ASSIGNED, PLANNER, now_ms, f"as-{route_id}-{i}",
                                    route_id=route_id) for i in ids]
    await store.put_dispatch_route(route, None, now_ms, ts)


def verify_webhook(secret: str, header: str, body: bytes, now_s: int) -> bool:
    """docs/notifications.md, "Verifying a webhook", steps 1-3."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or abs(now_s - int(t)) > TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode("utf-8"), t.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)
