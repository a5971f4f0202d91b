"""What the uplink machine asks its I/O shell to do, and the counters it keeps."""

from __future__ import annotations

from dataclasses import dataclass, field

from geostream.session import Acknowledged

from .liveness import Ping, Probe

__all__ = ["Abort", "ApplyAck", "Close", "Connect", "Migrate", "Ping", "Probe", "SendData",
           "UplinkStats"]


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a new connection, then call `connecting()` and `handshake_done()`."""


@dataclass(frozen=True, slots=True)
class SendData:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection (CONNECTION_CLOSE with code/reason) and drop it."""
    code: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Abort:
    """Drop the connection without telling the peer (it is gone already)."""


@dataclass(frozen=True, slots=True)
class Migrate:
    """Move the connection to a socket on `local_host`; report with `migrated()`."""
    local_host: str


@dataclass(frozen=True, slots=True)
class ApplyAck:
    """Apply an ack to the journal (then the readings it covers may be deleted)."""
    ack: Acknowledged


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Run a downlink command through the daemon's command runner; its answer comes back
    through `UplinkMachine.command_answered`."""
    command: object  # geostream.messages.Command


@dataclass
class UplinkStats:
    state: str = "disconnected"
    connects: int = 0
    batches_sent: int = 0
    readings_sent: int = 0
    readings_acked: int = 0
    last_error: str = ""
    last_ack_monotonic: float | None = None
    server_clock_offset_ms: int | None = None
    extra: dict = field(default_factory=dict)
