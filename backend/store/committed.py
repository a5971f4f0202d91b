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
        key = (vehicle, epoch)
        found = self._ranges.pop(key, None)
        los, his = found if found is not None else ([], [])
        for seq in sorted(seqs):
            i = bisect.bisect_right(los, seq) - 1
            if i >= 0 and seq <= his[i] + 1:      # inside or just after range i
                if seq > his[i]:
                    his[i] = seq
                    if i + 1 < len(los) and los[i + 1] == seq + 1:  # closes the gap
                        his[i] = his.pop(i + 1)
                        los.pop(i + 1)
            elif i + 1 < len(los) and los[i + 1] == seq + 1:  # just before range i + 1
                los[i + 1] = seq
            else:
                los.insert(i + 1, seq)
                his.insert(i + 1, seq)
        while len(los) > self.max_ranges:
            los.pop(0)
            his.pop(0)
        self._ranges[key] = (los, his)
        while len(self._ranges) > self.max_keys:
            self._ranges.popitem(last=False)
