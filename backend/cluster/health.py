"""Node health for discovery (docs/scaling.md §9), sans-IO: what the routers report on NATS
and which of them the DNS name may point at, at `now`.

A router reports `{"node", "role", "addr", "ok"}` on `fleet.health.<role>.<node>` every
`HEALTH_INTERVAL_S`; it is healthy while it hears at least one live gateway node (a router
without nodes serves nobody). A report older than `STALE_AFTER_S` counts as unhealthy: a dead
router says nothing, so silence must take it out of the answer.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from ..fanout_messages import parse

SUBJECT = "fleet.health."
HEALTH_INTERVAL_S = 1.0
# Three missed reports: one lost message or a busy second is not a death.
STALE_AFTER_S = 3.0
# a node's name and role are one NATS subject token each: short words
MAX_NAME = 128


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
        """Raises ValueError for anything that is not a report: every field typed, the address
        an IP address (it becomes an A or AAAA record), the size bounded before parsing."""
        d = parse(data)
        for key in ("node", "role"):
            if not isinstance(d.get(key), str) or not 0 < len(d[key]) <= MAX_NAME:
                raise ValueError(f"not a health report: {key} must be a short string")
        if type(d.get("ok")) is not bool:
            raise ValueError("not a health report: ok must be true or false")
        addr = d.get("addr")
        try:
            ipaddress.ip_address(addr if isinstance(addr, str) else "")
        except ValueError:
            raise ValueError(f"not a health report: addr {addr!r:.60} is no IP address") from None
        return cls(d["node"], d["role"], addr, d["ok"])


class HealthBook:
    """The newest report of every node and when it came."""

    def __init__(self, stale_after_s: float = STALE_AFTER_S):
        self.stale_after_s = stale_after_s
        self.invalid = 0  # reports refused by Report.decode (the NATS edge counts them here)
        self._last: dict[str, tuple[Report, float]] = {}

    def report(self, r: Report, now: float) -> None:
        self._last[r.node] = (r, now)

    def healthy(self, role: str, now: float) -> list[str]:
        """Addresses of the nodes of `role` whose fresh report says ok, sorted."""
        return sorted({r.addr for r, seen in self._last.values()
                       if r.role == role and r.ok and now - seen <= self.stale_after_s})
