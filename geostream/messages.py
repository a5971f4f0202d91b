"""geostream/1.0 messages as small immutable values (docs/protocol.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Hello:
    vehicle: str
    token: str
    epoch: int
    agent: str = ""
    acked: int = 0
    v: int = 1
    # revision 2 (docs/protocol.md §10): the commands this agent runs (None: not said, the
    # 1.0 set) and what else it does ("act": driver-action readings)
    commands: tuple[str, ...] | None = None
    features: tuple[str, ...] = ()
    zdict: tuple[int, ...] = ()  # revision 5: the preset dictionaries it carries (§3.2)


@dataclass(frozen=True, slots=True)
class Welcome:
    credit: int
    max_batch_bytes: int
    time: int
    v: int = 1
    z: bool = False  # the gateway accepts compressed batches ("z", docs/protocol.md §3)
    features: tuple[str, ...] = ()  # revision 2: what the gateway takes ("act")
    zdict: int | None = None  # revision 5: the preset dictionary picked (§3.2), or none


@dataclass(frozen=True, slots=True)
class Batch:
    epoch: int
    readings: tuple[dict[str, Any], ...]
    vehicle: str | None = None  # optional; must equal the hello's vehicle
    wire_size: int = field(default=0, compare=False)  # framed size as received (0 if built)


@dataclass(frozen=True, slots=True)
class Ack:
    epoch: int
    through: int
    ranges: Ranges = ()
    credit: int = 0


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    reason: str
    fatal: bool


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandAck:
    id: int
    ok: bool
    detail: str = ""
    result: dict[str, Any] | None = None  # revision 2: the structured answer


@dataclass(frozen=True, slots=True)
class Status:
    """The agent's own health, now and then (docs/protocol.md §3 status); not a reading."""

    time: int
    backlog: int
    journal_bytes: int
    sources: tuple[tuple[str, str], ...] = ()
    oldest: int | None = None
    dropped: int = 0
    rtt_ms: int | None = None
    uptime_s: int | None = None

    def as_json(self) -> dict[str, Any]:
        out = {"time": self.time, "backlog": self.backlog, "journal_bytes": self.journal_bytes,
               "dropped": self.dropped, "sources": dict(self.sources)}
        for key in ("oldest", "rtt_ms", "uptime_s"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message whose type this side does not know (answered with `unknown-type`)."""

    type: str


Message = Unknown | Hello | Welcome | Batch | Ack | Error | Command | CommandAck | Status
