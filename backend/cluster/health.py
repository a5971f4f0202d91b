"""Node health for discovery (docs/scaling.md §9), sans-IO: what the routers report on NATS
and which of them the DNS name may point at, at `now`.

A router reports `{"node", "role", "addr", "ok"}` on `fleet.health.<role>.<node>` every
`HEALTH_INTERVAL_S`; it is healthy while it hears at least one live gateway node (a router
without nodes serves nobody). A report older than `STALE_AFTER_S` counts as unhealthy: a dead
router says nothing, so silence must take it out of the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SUBJECT = "fleet.health."
HEALTH_INTERVAL_S = 1.0
# Three missed reports: one lost message or a busy second is not a death.
STALE_AFTER_S = 3.0


@dataclass(frozen=True)
class Report:
    node: str
    role: str
    addr: str
    ok: bool

    def subject(self) -> str:
        return f"{SUBJECT}{self.role}.{self.node.replace('.', '_')}"  # one subject token

    def encode(self) -> bytes:
        return json.dumps({"node": self.node, "role": self.role, "addr": self.addr,
                           "ok": self.ok}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Report:
        """Raises ValueError for anything that is not a report."""
        try:
            d = json.loads(data)
            return cls(str(d["node"]), str(d["role"]), str(d["addr"]), d["ok"] is True)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"not a health report: {exc}") from exc


class HealthBook:
    """The newest report of every node and when it came."""

    def __init__(self, stale_after_s: float = STALE_AFTER_S):
        self.stale_after_s = stale_after_s
        self._last: dict[str, tuple[Report, float]] = {}

    def report(self, r: Report, now: float) -> None:
        self._last[r.node] = (r, now)

    def healthy(self, role: str, now: float) -> list[str]:
        """Addresses of the nodes of `role` whose fresh report says ok, sorted."""
        return sorted({r.addr for r, seen in self._last.values()
                       if r.role == role and r.ok and now - seen <= self.stale_after_s})
