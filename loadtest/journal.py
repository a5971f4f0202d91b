"""A simulated vehicle's journal in memory: the agent's pending readings as stored payloads.

The agent's journal keeps each pending reading as its CBOR payload (agent.wire_encode) in a
SQLite file; thousands of simulated vehicles in one process keep them in a dict instead. What
goes next is decided by the agent's own drain order (`agent.journal_drain.plan_batch`, the
same function the journal file drains through), and acknowledgements delete as the agent's
`delete_acked` does (every seq ≤ through, and the inclusive ranges). Sans-IO, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from agent.journal_drain import DrainState, encoded_rows, plan_batch
from geostream.codec import EncodedReadings


class MemoryJournal:
    """Pending readings by sequence number; seqs are 1, 2, … in the order appended."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[bool, bytes]] = {}  # seq → (is a position, payload)
        self.next_seq = 1
        self._low = 1  # no pending seq is below this

    def append(self, payload: bytes, is_position: bool) -> int:
        seq = self.next_seq
        self.rows[seq] = (is_position, payload)
        self.next_seq += 1
        return seq

    @property
    def pending(self) -> int:
        return len(self.rows)

    def acked_through(self) -> int:
        """Every seq ≤ this is acknowledged (the agent's `Journal.acked_through`)."""
        rows, low = self.rows, self._low
        while low < self.next_seq and low not in rows:
            low += 1
        self._low = low
        return low - 1

    def next_batch(self, drain: DrainState, max_readings: int,
                   max_bytes: int) -> EncodedReadings:
        """The agent's live-first batch (`plan_batch`), encoded for the wire as the journal's
        payloads (`encoded_rows`); updates `drain`."""
        return encoded_rows(plan_batch(self._live(drain.cursor), self._after(drain.cursor), drain,
                                    max_readings, max_bytes))

    def acknowledge(self, through: int, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """Delete seqs ≤ through and those in the inclusive ranges; returns the seqs gone."""
        rows, gone = self.rows, []
        for q in range(self._low, min(through, self.next_seq - 1) + 1):
            if rows.pop(q, None) is not None:
                gone.append(q)
        self._low = max(self._low, through + 1)
        for first, last in ranges:
            for q in range(max(first, self._low), min(last, self.next_seq - 1) + 1):
                if rows.pop(q, None) is not None:
                    gone.append(q)
        return gone

    def _live(self, cursor: int) -> tuple[int, bytes] | None:
        """The newest pending position above `cursor` (the journal's `kind='pos'` query)."""
        rows = self.rows
        for q in range(self.next_seq - 1, cursor, -1):
            row = rows.get(q)
            if row is not None and row[0]:
                return q, row[1]
        return None

    def _after(self, cursor: int) -> Iterator[tuple[int, bytes]]:
        """Pending rows above `cursor`, oldest first (read lazily by `plan_batch`)."""
        rows = self.rows
        for q in range(max(cursor + 1, self._low), self.next_seq):
            row = rows.get(q)
            if row is not None:
                yield q, row[1]
