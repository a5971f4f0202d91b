"""Which readings this process has already committed, as sequence ranges: a routing hint.

The PostgreSQL writer copies a transaction's rows straight into the readings table (binary
COPY, as fast as the database takes rows) when none of them can already be stored, and sends
the others through the slower duplicate-checking path (`INSERT … ON CONFLICT DO NOTHING`).
A vehicle's readings carry consecutive sequence numbers per epoch, so what one process
committed is a few ranges per vehicle. A reading inside them was committed here before (a
batch re-sent after a lost ack); one outside may still be stored (by another gateway process,
or before a restart): the database's unique key stays the judge, and a straight COPY that hits
it falls back to the checking path. The hint never decides what is stored, only how fast.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
import collections

# Ranges kept per (vehicle, epoch): a drain commits live readings first and the backlog after,
# so a vehicle has a handful of open ranges; past this the lowest go (their readings are then
# "maybe stored" again, which only costs speed).
MAX_RANGES = 32
# (vehicle, epoch) pairs remembered, least recently committed forgotten first: ~100 bytes of
# ranges each, so 100,000 pairs (ten times the fleet goal) stay within ~10 MB.
MAX_KEYS = 100_000


class CommittedRanges:
    """`maybe_stored(vehicle, epoch, seq)` after `add(vehicle, epoch, seqs)` of committed rows."""

    def __init__(self, max_ranges: int = MAX_RANGES, max_keys: int = MAX_KEYS):
        self.max_ranges = max_ranges
        self.max_keys = max_keys
        # (vehicle, epoch) → sorted, disjoint, non-adjacent [lo, hi] ranges as two lists
        self._ranges: collections.OrderedDict[tuple[str, int], tuple[list[int], list[int]]] = (
            collections.OrderedDict())

    def __len__(self) -> int:
        return len(self._ranges)

    def maybe_stored(self, vehicle: str, epoch: int, seq: int) -> bool:
        """True if this process committed (vehicle, epoch, seq) and still remembers it."""
        found = self._ranges.get((vehicle, epoch))
        if found is None:
            return False
        los, his = found
        i = bisect.bisect_right(los, seq) - 1
        return i >= 0 and seq <= his[i]

    def add(self, vehicle: str, epoch: int, seqs: list[int]) -> None:
        """Remember `seqs` of (vehicle, epoch) as committed."""
        if not seqs:
            return
        key = (vehicle, epoch)
        ranges = self._ranges
        found = ranges.get(key)
        if found is None:
            los: list[int] = []
            his: list[int] = []
            ranges[key] = (los, his)
            while len(ranges) > self.max_keys:
                ranges.popitem(last=False)
        else:
            los, his = found
            ranges.move_to_end(key)  # the most recently committed are forgotten last
        if len(seqs) == 1:  # at 1 Hz, a vehicle's one reading of the transaction
            seq = seqs[0]
            if his and his[-1] + 1 == seq:  # its next number: the newest range grows
                his[-1] = seq
                return
            _merge(los, his, seq, seq)
        else:
            ordered = sorted(seqs)
            lo = hi = ordered[0]
            for seq in ordered:  # one merge per run of consecutive numbers
                if seq > hi + 1:
                    _merge(los, his, lo, hi)
                    lo = seq
                hi = max(hi, seq)
            _merge(los, his, lo, hi)
        if len(los) > self.max_ranges:
            del los[:len(los) - self.max_ranges]
            del his[:len(his) - self.max_ranges]


def _merge(los: list[int], his: list[int], lo: int, hi: int) -> None:
    """Add [lo, hi] to the sorted, disjoint, non-adjacent ranges (`los[i]`, `his[i]`)."""
    i = bisect.bisect_left(his, lo - 1)  # the first range that ends at or after lo - 1
    j = i
    n = len(los)
    while j < n and los[j] <= hi + 1:  # ranges that overlap or touch [lo, hi]
        if los[j] < lo:
            lo = los[j]
        if his[j] > hi:
            hi = his[j]
        j += 1
    if j == i + 1 and los[i] == lo and his[i] == hi:
        return  # inside one range already
    los[i:j] = [lo]
    his[i:j] = [hi]
