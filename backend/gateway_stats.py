"""The gateway's counters: what `GET /metrics` and `python -m backend`'s status report about the
vehicles' sessions. The connections (backend/gateway_conn.py) count through these methods;
the gateway owns one `GatewayStats`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from geostream.errors import ErrorCode


@dataclass
class GatewayStats:
    connections: int = 0  # QUIC connections opened
    auth_failures: int = 0  # hellos refused (unknown vehicle, wrong token, revoked)
    protocol_errors: int = 0  # sessions ended with a geostream error
    batches: int = 0  # batches committed and acknowledged
    readings: int = 0  # readings committed
    invalid_readings: int = 0  # readings refused as invalid (stored as dead letters)
    commit_timeouts: int = 0  # batches whose commit outlasted the ack wait
    commands_failed: int = 0  # stored commands the registry no longer allows (not sent)
    refusals: Counter[str] = field(default_factory=Counter)  # by error code label
    invalid_by_rule: Counter[str] = field(default_factory=Counter)  # by the rule broken

    def session_failed(self, code: ErrorCode) -> None:
        """A session ended with a geostream error."""
        self.protocol_errors += 1
        self.refusals[code.label] += 1

    def unknown_type_skipped(self) -> None:
        """A message of an unknown type, answered `unknown-type` (the session goes on)."""
        self.refusals[ErrorCode.UNKNOWN_TYPE.label] += 1

    def invalid(self, rule: str) -> None:
        """One reading refused for breaking `rule` (time, position, quantity, signals, event,
        action)."""
        self.invalid_readings += 1
        self.invalid_by_rule[rule] += 1

    def committed(self, batches: int, readings: int) -> None:
        """`batches` holding `readings` committed and acknowledged (a tick's, at its end)."""
        self.batches += batches
        self.readings += readings

    def as_dict(self) -> dict:
        """JSON-able, for the backend's status."""
        return {"connections": self.connections, "auth_failures": self.auth_failures,
                "protocol_errors": self.protocol_errors, "batches": self.batches,
                "readings": self.readings, "invalid_readings": self.invalid_readings,
                "commit_timeouts": self.commit_timeouts,
                "commands_failed": self.commands_failed, "refusals": dict(self.refusals),
                "invalid_by_rule": dict(self.invalid_by_rule)}
