"""The journal's uplink side (docs/journal.md §3): which pending readings go in the next
batch, live-first, within a count and a byte budget, encoded for the wire with their "q"
around the stored payloads (`encoded_rows`); and deleting what the backend acknowledged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

import cbor2

from geostream.encoded import EncodedReadings, cbor_head

from .journal_file import rollback

# bytes a reading's batch entry adds to its stored payload: the "q" key and a small uint
_Q_BYTES = 3
# free pages kept for reuse after acks; beyond that, give pages back in bounded steps
VACUUM_KEEP_PAGES = 2048
VACUUM_STEP_PAGES = 512


class EpochChanged(ConnectionError):
    """The journal was recreated under a connection: reconnect and announce the new epoch."""


@dataclass
class DrainState:
    """Where the uplink is in the journal on one connection (see `next_rows`).

    `cursor`: every pending reading with seq ≤ cursor has been sent; `live`: seqs above the
    cursor already sent ahead of the backlog (live-first), so the backlog skips them; `epoch`:
    the connection's epoch — `Journal.next_batch` raises EpochChanged if the journal's differs;
    `more`: set by `next_rows` when it stopped at a budget rather than at the last reading.
    """

    cursor: int
    live: set[int] = field(default_factory=set)
    epoch: int = 0  # the epoch the connection announced; 0 = do not check
    more: bool = False  # the last batch stopped at its budget: readings are left to send


def wire_rows(rows: list[tuple[int, bytes]]) -> list[dict]:
    """Stored payloads → the batch's reading maps, each with its "q"."""
    out = []
    for seq, payload in rows:
        wire = cbor2.loads(payload)
        wire["q"] = seq
        out.append(wire)
    return out


_MAP, _ARRAY, _UINT = 0xA0, 0x80, 0x00  # CBOR major types (top 3 bits of a head byte)
_DIRECT_MAX = 23  # a map of at most this many pairs has its count in its head byte
_Q_KEY = cbor2.dumps("q")
_ARRAY_OF_ONE = cbor_head(_ARRAY, 1)
# a map head of n pairs → the head of n + 1 (for the maps whose count is in the head byte)
_ONE_MORE = {_MAP | n: cbor_head(_MAP, n + 1) for n in range(_DIRECT_MAX + 1)}


def encoded_rows(rows: list[tuple[int, bytes]]) -> EncodedReadings:
    """Stored payloads → the batch's readings array in CBOR, each map with its "q" last: byte
    for byte `cbor2.dumps(wire_rows(rows))` (a payload is a reading map without "q",
    docs/journal.md), written around the payloads instead of decoding and re-encoding them."""
    if len(rows) == 1:  # a live batch: one reading
        seq, payload = rows[0]
        head = _ONE_MORE.get(payload[0])
        if head is not None:
            return EncodedReadings((seq,), b"".join(
                (_ARRAY_OF_ONE, head, payload[1:], _Q_KEY, cbor_head(_UINT, seq))))
    parts = [cbor_head(_ARRAY, len(rows))]
    for seq, payload in rows:
        head = _ONE_MORE.get(payload[0])
        if head is not None:
            parts += (head, payload[1:], _Q_KEY, cbor_head(_UINT, seq))
        else:  # a map with a longer head: as wire_rows does
            wire = cbor2.loads(payload)
            wire["q"] = seq
            parts.append(cbor2.dumps(wire))
    return EncodedReadings(tuple([seq for seq, _ in rows]), b"".join(parts))


# the batch when nothing is pending (an empty readings array)
NO_READINGS = EncodedReadings((), cbor_head(_ARRAY, 0))


def rows_after(db: sqlite3.Connection, after_seq: int, max_readings: int,
               max_bytes: int) -> list[dict]:
    """Oldest-first pending readings with seq > after_seq; at least one if any is pending,
    then stops before the payload would exceed max_bytes."""
    rows: list[tuple[int, bytes]] = []
    size = 0
    for seq, payload in db.execute(
            "SELECT seq, payload FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, max_readings)):
        size += len(payload) + _Q_BYTES
        if rows and size > max_bytes:
            break
        rows.append((seq, payload))
    return wire_rows(rows)


def next_rows(db: sqlite3.Connection, drain: DrainState, max_readings: int,
              max_bytes: int) -> EncodedReadings:
    """Live-first from the journal file: `plan_batch` over its pending rows, encoded around
    their stored payloads (`encoded_rows`: no decode and re-encode); updates `drain`."""
    live = db.execute(
        "SELECT seq, payload FROM readings WHERE kind='pos' AND seq > ? "
        "ORDER BY seq DESC LIMIT 1", (drain.cursor,)).fetchone()
    # rows beyond the budget tell whether readings are left (`more`)
    cur = db.execute("SELECT seq, payload FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
                     (drain.cursor, max_readings + len(drain.live) + 2))
    return encoded_rows(plan_batch(live, cur, drain, max_readings, max_bytes))


def plan_batch(live: tuple[int, bytes] | None, pending: Iterable[tuple[int, bytes]],
               drain: DrainState, max_readings: int, max_bytes: int) -> list[tuple[int, bytes]]:
    """The drain order, pure: which pending rows go in the next batch, in wire order.

    `live` is the newest pending position above `drain.cursor` (or None); `pending` the pending
    rows above the cursor oldest-first (read lazily: at most max_readings + len(drain.live) + 2
    of them). Live-first: the live row first (if the backlog batch would not reach it), then the
    backlog oldest-first, within max_readings and max_bytes; updates `drain`. The journal file
    (`next_rows`) and the load tester's simulated vehicles (loadtest/) both drain through it.
    """
    held = drain.live  # sent ahead already: the backlog skips them
    if live is not None and live[0] in held:
        live = None
    live_seq = None if live is None else live[0]
    budget_n, budget_b = max_readings, max_bytes
    if live is not None and max_readings > 1:
        budget_n -= 1
        budget_b -= len(live[1]) + _Q_BYTES
    backlog: list[tuple[int, bytes]] = []
    size = 0
    live_in_backlog = False
    # rows beyond the budget tell whether readings are left (`more`); the live row can be
    # one of them, and goes anyway
    drain.more = False
    for seq, payload in pending:
        if held and seq in held:
            continue
        if seq == live_seq and (
                len(backlog) >= budget_n or size + len(payload) + _Q_BYTES > budget_b):
            continue
        if len(backlog) >= budget_n:
            drain.more = True
            break
        size += len(payload) + _Q_BYTES
        if (backlog or live is not None) and size > budget_b:
            drain.more = True
            break
        backlog.append((seq, payload))
        if seq == live_seq:
            live_in_backlog = True
    rows = backlog
    if live is not None and not live_in_backlog:
        rows = [live, *backlog]
        held.add(live_seq)
    if backlog:
        cursor = drain.cursor = backlog[-1][0]
        if held:
            drain.live = {s for s in held if s > cursor}
    return rows


def delete_acked(db: sqlite3.Connection, through: int,
                 ranges: Iterable[tuple[int, int]]) -> int:
    """Delete seqs ≤ through and those in the inclusive `ranges` in one transaction, then give
    back at most VACUUM_STEP_PAGES of free pages beyond VACUUM_KEEP_PAGES; returns rows gone."""
    db.execute("BEGIN IMMEDIATE")
    try:
        n = db.execute("DELETE FROM readings WHERE seq <= ?", (through,)).rowcount
        for first, last in ranges:
            n += db.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?",
                            (first, last)).rowcount
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    if free > VACUUM_KEEP_PAGES:
        # its own short transaction; executescript steps it to completion (a plain execute()
        # frees only one page)
        step = min(VACUUM_STEP_PAGES, free - VACUUM_KEEP_PAGES)
        db.executescript(f"PRAGMA incremental_vacuum({step})")
    return n
