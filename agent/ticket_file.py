"""The agent's stored TLS session ticket (docs/protocol.md §8): 0-RTT after a restart.

One JSON file, written atomically with mode 0600 (not fsynced: a cache, see `save`); an
unusable or expired one is ignored.
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from types import ModuleType

from geostream.secretfile import write_private
from geostream.tickets import ticket_from_json, ticket_to_json, utc

log = logging.getLogger(__name__)

TICKET_FILE_NAME = "session-ticket.json"


class TicketFile:
    def __init__(self, path: Path | str, lib: ModuleType | None = None) -> None:
        """`lib`: the QUIC library whose `SessionTicket` `load` returns (geostream/quic/)."""
        self.path = Path(path)
        self.lib = lib

    def save(self, ticket) -> None:
        """Store `ticket` (the QUIC library's session_ticket_handler, called inside the
        handshake on the event loop); a failure is logged, not raised. Atomic but not fsynced:
        the ticket is a cache (a power cut that leaves the file old or empty costs one full
        handshake, `load` ignores what it cannot read), and an fsync per connect blocked the
        loop for as long as the storage took to flush (an SD card: tens of ms) and cost ~1 ms
        of CPU here (docs/benchmarks.md, "What a handshake costs each side, session 18")."""
        try:
            write_private(self.path, json.dumps(ticket_to_json(ticket)).encode(), durable=False)
        except OSError as exc:
            log.warning("cannot store session ticket in %s: %s", self.path, exc)

    def load(self, now: datetime.datetime | None = None) -> object | None:
        """The stored ticket if it is still valid at `now` (UTC; default: the wall clock)."""
        try:
            ticket = ticket_from_json(json.loads(self.path.read_text()), self.lib)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unusable session ticket %s: %s", self.path, exc)
            return None
        now = now or datetime.datetime.now(datetime.UTC)
        return ticket if utc(ticket.not_valid_after) > now else None
