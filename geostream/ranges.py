"""A set of unsigned integers kept as sorted, merged, inclusive ranges."""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class RangeSet:
    """Sorted non-overlapping inclusive [first, last] ranges; adjacent ranges are merged."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()):
        self._starts: list[int] = []
        self._ends: list[int] = []
        for first, last in ranges:
            self.add(first, last)

    def add(self, first: int, last: int | None = None) -> None:
        last = first if last is None else last
        if last < first:
            raise ValueError(f"empty range [{first}, {last}]")
        i = bisect.bisect_left(self._ends, first - 1)
        j = i
        while j < len(self._starts) and self._starts[j] <= last + 1:
            first = min(first, self._starts[j])
            last = max(last, self._ends[j])
            j += 1
        self._starts[i:j] = [first]
        self._ends[i:j] = [last]

    def __contains__(self, value: int) -> bool:
        i = bisect.bisect_left(self._ends, value)
        return i < len(self._starts) and self._starts[i] <= value

    def __iter__(self):
        return iter(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    def count(self) -> int:
        return sum(e - s + 1 for s, e in self)

    def contiguous_from(self, start: int) -> int:
        """Largest n ≥ start such that every value in (start, n] is in the set."""
        i = bisect.bisect_left(self._ends, start + 1)
        if i < len(self._starts) and self._starts[i] <= start + 1:
            return self._ends[i]
        return start

    def discard_through(self, value: int) -> None:
        """Forget every value ≤ value (they are covered by a cumulative mark)."""
        while self._starts and self._ends[0] <= value:
            del self._starts[0], self._ends[0]
        if self._starts and self._starts[0] <= value:
            self._starts[0] = value + 1

    @classmethod
    def from_values(cls, values: Iterable[int]) -> RangeSet:
        out = cls()
        for v in sorted(values):
            out.add(v)
        return out
