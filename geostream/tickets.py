"""TLS session tickets as plain JSON, for both sides' ticket files (docs/protocol.md §8).

Every field of a `SessionTicket` (the same fields in both QUIC libraries of the seam,
geostream/quic/) is written explicitly (bytes as hex, times as ISO 8601 with their UTC offset),
so a stored ticket never depends on pickling or on a library's internals, and a ticket written
under one library reads back under the other.
"""

from __future__ import annotations

import datetime
from types import ModuleType

from geostream.quic import library


def utc(moment: datetime.datetime) -> datetime.datetime:
    """`moment` as an aware UTC time; a naive one is UTC already (qh3 keeps ticket times so)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def ticket_to_json(t) -> dict:
    """A session ticket (either library's) as a JSON-ready dict, its times aware in UTC."""
    return {"age_add": t.age_add, "cipher_suite": int(t.cipher_suite),
            "not_valid_after": utc(t.not_valid_after).isoformat(),
            "not_valid_before": utc(t.not_valid_before).isoformat(),
            "resumption_secret": t.resumption_secret.hex(), "server_name": t.server_name,
            "ticket": t.ticket.hex(), "max_early_data_size": t.max_early_data_size,
            "other_extensions": [[k, v.hex()] for k, v in t.other_extensions]}


def ticket_from_json(d: dict, lib: ModuleType | None = None):
    """The inverse of `ticket_to_json`: a `SessionTicket` of QUIC library `lib` (None: the
    process's, geostream.quic.library); raises KeyError/ValueError/TypeError on bad input."""
    lib = lib or library()
    return lib.SessionTicket(
        age_add=int(d["age_add"]), cipher_suite=lib.CipherSuite(d["cipher_suite"]),
        not_valid_after=lib.ticket_time(utc(datetime.datetime.fromisoformat(
            d["not_valid_after"]))),
        not_valid_before=lib.ticket_time(utc(datetime.datetime.fromisoformat(
            d["not_valid_before"]))),
        resumption_secret=bytes.fromhex(d["resumption_secret"]), server_name=d["server_name"],
        ticket=bytes.fromhex(d["ticket"]), max_early_data_size=d["max_early_data_size"],
        other_extensions=[(int(k), bytes.fromhex(v)) for k, v in d["other_extensions"]])
