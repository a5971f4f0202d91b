"""Logging for the agent: structured journald fields under systemd, plain text elsewhere.

Under systemd (INVOCATION_ID or JOURNAL_STREAM set) and with systemd-python installed, records
go to journald through its `JournalHandler` with fields VEHICLE, COMPONENT (the agent package a
logger belongs to: gps, can, uplink, journal, ...) and whatever a caller passes as
`extra={"SOURCE": ..., "FIXES": ...}` (journald keeps only upper-case field names). Elsewhere:
one plain text line per record on stderr.

`RateLimit` keeps a flapping device or a dead link from filling the journal: the same warning
(logger, call site, message template) passes at most `burst` times per `window_s`; the next one
that passes says how many were suppressed. Pure: time is the record's own `created`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

# the same warning at most this often: enough to see a problem start, not a line per retry
RATE_WINDOW_S = 60.0
RATE_BURST = 5
# INFO and DEBUG are what an operator asks for; only WARNING and above are rate-limited
RATE_LIMITED_FROM = logging.WARNING
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("debug", "info", "warning", "error")
SYSLOG_IDENTIFIER = "fleet-agent"


def under_systemd(environ: dict | None = None) -> bool:
    """True when systemd started us: our stderr is then the journal anyway."""
    env = os.environ if environ is None else environ
    return bool(env.get("INVOCATION_ID") or env.get("JOURNAL_STREAM"))


def component(logger_name: str) -> str:
    """agent.gps.serial_source -> gps; agent.uplink -> uplink; backend.x -> backend."""
    parts = logger_name.split(".")
    if parts[0] == "agent" and len(parts) > 1:
        return parts[1]
    return parts[0]


@dataclass
class _Seen:
    window_start: float
    count: int = 0
    suppressed: int = 0


@dataclass
class RateLimit(logging.Filter):
    """Pass the same warning `burst` times per `window_s`; count the rest."""

    window_s: float = RATE_WINDOW_S
    burst: int = RATE_BURST
    seen: dict[tuple, _Seen] = field(default_factory=dict)
    suppressed_total: int = 0

    def __post_init__(self) -> None:
        logging.Filter.__init__(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < RATE_LIMITED_FROM:
            return True
        key = (record.name, record.pathname, record.lineno, str(record.msg))
        now = record.created
        entry = self.seen.get(key)
        if entry is None or now - entry.window_start >= self.window_s:
            suppressed = entry.suppressed if entry else 0
            entry = self.seen[key] = _Seen(now)
            if suppressed:
                record.msg = f"{record.msg} ({suppressed} more like this suppressed)"
                record.SUPPRESSED = suppressed
        entry.count += 1
        if entry.count > self.burst:
            entry.suppressed += 1
            self.suppressed_total += 1
            return False
        if len(self.seen) > 1000:  # bounded: forget windows that have ended
            self.seen = {k: v for k, v in self.seen.items() if now - v.window_start < self.window_s}
        return True


class _Fields(logging.Filter):
    """Adds VEHICLE and COMPONENT to every record (journald fields)."""

    def __init__(self, vehicle: str):
        super().__init__()
        self.vehicle = vehicle

    def filter(self, record: logging.LogRecord) -> bool:
        record.VEHICLE = self.vehicle
        record.COMPONENT = component(record.name)
        return True


def parse_level(value: object, where: str = "[log]") -> int:
    """"info" / "INFO" -> logging.INFO; anything else is a ConfigError."""
    from .config import ConfigError

    if not isinstance(value, str) or value.lower() not in LEVELS:
        raise ConfigError(f"{where}: 'level' must be one of {', '.join(LEVELS)}")
    return getattr(logging, value.upper())


def journal_handler(vehicle: str) -> logging.Handler | None:
    """systemd-python's JournalHandler, or None when the module is missing."""
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    return JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER, VEHICLE=vehicle)


def setup(level: int = logging.INFO, vehicle: str = "", *, journald: bool | None = None,
          stream=None) -> logging.Handler:
    """Install the one root handler (replacing any); returns it. `journald=None`: decide from
    the environment."""
    use_journal = under_systemd() if journald is None else journald
    handler = journal_handler(vehicle) if use_journal else None
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        # under systemd without systemd-python the journal stamps the time itself
        handler.setFormatter(logging.Formatter(
            "%(levelname)s %(name)s: %(message)s" if use_journal else PLAIN_FORMAT))
    handler.addFilter(_Fields(vehicle))
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def set_level(level: int) -> None:
    logging.getLogger().setLevel(level)
