"""The journal's size, age and memory limits (docs/journal.md §4–5): which older readings
an append thins or drops, in bounded steps, which held readings a failing disk costs, and the
`journal-dropped` events and counters that record them.

Runs inside the append transaction on the connection it is given; time comes in as `now`.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import cbor2

from .journal_file import delete_seqs, meta, used_bytes
from .readings import Event, Reading

# when full, old positions are thinned to one per minute before anything is dropped outright
THIN_BUCKET_MS = 60_000
# rows one commit may thin or drop: a bounded step (tens of ms on a Pi), never a long stall
DROP_STEP_ROWS = 20_000
# once over the size limit, shed down to this share of it, so drops come in rare bursts
LOW_WATER = 0.9
# the age limit is checked at most this often (by the clock), so appends stay cheap
AGE_CHECK_INTERVAL_S = 60.0
# a journal-dropped event lists at most this many seq ranges (the last one widened to cover)
MAX_EVENT_RANGES = 32
# what the size and age limits may drop: never events (they say what was dropped) nor a
# driver's actions (docs/protocol.md §4 "act": they are the driver's work, not telemetry)
_DROPPABLE = "kind NOT IN ('evt', 'act')"


@dataclass
class Dropped:
    """Readings one step dropped, and why: the content of a `journal-dropped` event."""

    reason: str
    counts: Counter = field(default_factory=Counter)
    seqs: list[int] = field(default_factory=list)
    ts_min: int | None = None
    ts_max: int | None = None

    def add(self, seq: int | None, kind: str, ts: int) -> None:
        self.counts[kind] += 1
        if seq is not None:
            self.seqs.append(seq)
        self.ts_min = ts if self.ts_min is None else min(self.ts_min, ts)
        self.ts_max = ts if self.ts_max is None else max(self.ts_max, ts)

    def event(self, now_ms: int) -> Event:
        data: dict = {"reason": self.reason, "counts": dict(self.counts),
                      "ts": [self.ts_min, self.ts_max]}
        if self.seqs:
            data["ranges"] = seq_ranges(sorted(self.seqs))
        return Event(now_ms, "journal-dropped", data)


def seq_ranges(seqs: list[int]) -> list[list[int]]:
    """Sorted seqs → inclusive [first, last] runs; at most MAX_EVENT_RANGES, the last widened."""
    out: list[list[int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    if len(out) > MAX_EVENT_RANGES:
        out = out[: MAX_EVENT_RANGES - 1] + [[out[MAX_EVENT_RANGES - 1][0], out[-1][1]]]
    return out


class Limits:
    """The size limit (with hysteresis down to LOW_WATER) and the age limit of one journal."""

    def __init__(self, max_bytes: int, max_age_ms: int):
        self.max_bytes = max_bytes
        self.max_age_ms = max_age_ms
        self._next_age_check = 0.0
        self._shedding = False

    def enforce(self, db: sqlite3.Connection, page_size: int, before_seq: int,
                newest_ts: int, now: float) -> list[Dropped]:
        """Inside the append transaction: one bounded age step and one bounded size step.

        Only readings older than this append (seq < before_seq) are candidates, so a live
        reading is never dropped by its own append. `now` is monotonic seconds.
        """
        out: list[Dropped | None] = []
        if self.max_age_ms > 0 and now >= self._next_age_check and newest_ts:
            self._next_age_check = now + AGE_CHECK_INTERVAL_S
            out.append(_drop_older_than(db, newest_ts - self.max_age_ms, before_seq))
        if self.max_bytes > 0:
            used = used_bytes(db, page_size)
            if used > self.max_bytes:
                self._shedding = True
            if self._shedding:
                if used <= self.max_bytes * LOW_WATER:
                    self._shedding = False
                else:
                    out.extend(self._shed_step(db, page_size, before_seq))
        return [d for d in out if d is not None]

    def _shed_step(self, db: sqlite3.Connection, page_size: int,
                   before_seq: int) -> list[Dropped | None]:
        """One bounded step of the size policy (docs/journal.md):

        1. thin positions in the older half of the journal to one per THIN_BUCKET_MS, oldest
           first (the newer half, where the dispatcher looks, is never thinned);
        2. if the journal is still over its limit, drop the oldest non-event readings, about
           as many as bring it to LOW_WATER, at most DROP_STEP_ROWS.
        """
        lowest = db.execute("SELECT min(seq) FROM readings").fetchone()[0] or before_seq
        horizon = lowest + (before_seq - lowest) // 2
        thinned = max(meta(db, "thinned_through"), lowest - 1)
        rows = db.execute(
            "SELECT seq, kind, ts_ms FROM readings WHERE seq > ? AND seq <= ? "
            "ORDER BY seq LIMIT ?", (thinned, horizon, DROP_STEP_ROWS)).fetchall()
        thin = None
        if rows:
            thin = Dropped("size-thinned")
            last_bucket = meta(db, "thinned_bucket")
            for seq, kind, ts in rows:
                if kind != "pos":
                    continue
                bucket = ts // THIN_BUCKET_MS
                if bucket == last_bucket:
                    thin.add(seq, kind, ts)
                else:
                    last_bucket = bucket
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (("thinned_through", rows[-1][0]), ("thinned_bucket", last_bucket)))
            if thin.seqs:
                delete_seqs(db, thin.seqs)
            else:
                thin = None
        used = used_bytes(db, page_size)
        if used <= self.max_bytes or before_seq <= lowest:
            return [thin]
        # rows ≈ seq span (holes make this high, so the per-row size low: we drop too few,
        # never too many, and the next append drops again)
        per_row = used / max(before_seq - lowest, 1)
        want = int((used - self.max_bytes * LOW_WATER) / per_row) + 1
        rows = db.execute(
            f"SELECT seq, kind, ts_ms FROM readings WHERE seq < ? AND {_DROPPABLE} "
            "ORDER BY seq LIMIT ?", (before_seq, min(want, DROP_STEP_ROWS))).fetchall()
        if not rows:
            return [thin]
        dropped = Dropped("size")
        for seq, kind, ts in rows:
            dropped.add(seq, kind, ts)
        delete_seqs(db, dropped.seqs)
        return [thin, dropped]


def _drop_older_than(db: sqlite3.Connection, cutoff_ts: int, before_seq: int) -> Dropped | None:
    # device time of the newest reading is "now": a Pi without RTC may boot with a wrong
    # clock, but GNSS time in the readings is right
    rows = db.execute(
        f"SELECT seq, kind, ts_ms FROM readings WHERE seq < ? AND {_DROPPABLE} "
        "ORDER BY seq LIMIT ?", (before_seq, DROP_STEP_ROWS)).fetchall()
    dropped = Dropped("age")
    for seq, kind, ts in rows:
        if ts < cutoff_ts:  # not a break: device time is not strictly ordered by seq
            dropped.add(seq, kind, ts)
    if not dropped.seqs:
        return None
    delete_seqs(db, dropped.seqs)
    return dropped


def record_drops(db: sqlite3.Connection, drops: list[Dropped], next_seq: int,
                 now_ms: int) -> int:
    """Inside the append transaction: one `journal-dropped` event per drop from `next_seq` on,
    and the per-kind counters in meta; returns the next free seq."""
    for d in drops:
        wire = d.event(now_ms).to_wire()
        db.execute("INSERT INTO readings VALUES (?,?,?,?)",
                   (next_seq, wire["ts"], "evt", cbor2.dumps(wire)))
        next_seq += 1
        for kind, count in d.counts.items():
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                       "SET value = value + excluded.value", (f"dropped_{kind}", count))
    return next_seq


def hold(held: list[Reading], readings: Sequence[Reading], limit: int,
         dropped: Dropped | None) -> Dropped | None:
    """Add `readings` to the memory buffer of a failing disk, keeping the newest `limit`;
    returns the `memory` drop record (None while nothing was dropped)."""
    held.extend(readings)
    excess = len(held) - limit
    if excess > 0:
        if dropped is None:
            dropped = Dropped("memory")
        for r in held[:excess]:
            wire = r.to_wire()
            dropped.add(None, wire["k"], wire["ts"])
        del held[:excess]
    return dropped
