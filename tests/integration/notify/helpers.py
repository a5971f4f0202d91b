"""Shared pieces of the notification tests: jobs put on a route (their `job.dispatched`
transitions), a fake clock, and the webhook verifier written from docs/notifications.md alone
("Verifying a webhook"), not from the signing code."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
REBIND_S = 10.0  # a receiver's port back after its pause (another program may hold it)


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


class HookReceiver:
    """A stdlib HTTP server on a thread: records (event id, signature ok) of each request in
    `seen` (a new server on the same port continues the same list); the first `fail_first`
    are answered 503."""

    def __init__(self, secret: str, fail_first: int = 0, port: int = 0,
                 seen: list | None = None):
        self.secret = secret
        self.fail_first = fail_first
        self.seen: list[tuple[str, bool]] = [] if seen is None else seen
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = verify_webhook(outer.secret, self.headers.get("X-Fleet-Signature", ""), body,
                                    int(time.time()))
                with outer.lock:
                    outer.seen.append((json.loads(body)["id"], ok))
                    failing = len(outer.seen) <= outer.fail_first
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        deadline = time.monotonic() + REBIND_S
        while True:
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                if not port or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def ids(self) -> set[str]:
        with self.lock:
            return {i for i, _ in self.seen}
