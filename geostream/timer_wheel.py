"""One timer structure for every deadline of a process with thousands of connections (sans-IO:
the caller passes `now` and arms one loop timer for `earliest()`): the gateway's UDP edge
(backend/gateway_edge.py) and a load-generator process (loadtest/edge.py) each keep one.

Each connection moves its deadline on most inputs (a QUIC timer after each send and receive,
the uplink machine's pacing after each batch). In a heap each move earlier is a push of a
(time, sequence, owner) tuple and a later pop of the superseded entry, and the superseded
entries need a rebuild now and then (the client process's profile showed its heap as a tenth
of its time; the gateway's `Deadlines` heap was 3–6 % of its samples at 4,000 vehicles, its
rebuild 1.4 %). Here deadlines fall into slots of `tick_s` (a deadline fires at the end of its
slot: at most one tick late, never early), an owner is filed once, a deadline that moves later
stays filed where it was until that slot comes and files it again (the common move: two dict
writes), and a slot's superseded entries go with the slot, so nothing is ever rebuilt.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable


class TimerWheel:
    """The next deadline of many owners, served a slot of `tick_s` seconds at a time."""

    __slots__ = ("tick_s", "_due", "_filed", "_slots", "_order")

    def __init__(self, tick_s: float):
        self.tick_s = tick_s
        self._due: dict[Hashable, float] = {}   # owner → its deadline
        self._filed: dict[Hashable, int] = {}   # owner → the slot it is filed in
        self._slots: dict[int, list[Hashable]] = {}
        self._order: list[int] = []             # slot numbers with entries, a heap

    def __len__(self) -> int:
        return len(self._due)

    def at(self, owner: Hashable) -> float | None:
        """`owner`'s deadline, None if it has none."""
        return self._due.get(owner)

    def set(self, owner: Hashable, when: float | None) -> None:
        """`owner` is due at `when` (None: never), whatever it was due at before."""
        if when is None:
            self._due.pop(owner, None)  # its filed entry is skipped when its slot comes
            return
        self._due[owner] = when
        slot = int(when / self.tick_s) + 1
        filed = self._filed
        if filed.get(owner, slot + 1) <= slot:
            return  # its slot comes first and files it again
        filed[owner] = slot
        entries = self._slots.get(slot)
        if entries is None:
            self._slots[slot] = [owner]
            heapq.heappush(self._order, slot)
        else:
            entries.append(owner)

    def overdue(self, before: float, n: int) -> list[tuple[Hashable, float]]:
        """Up to `n` owners due before `before`, earliest first, with their deadlines (a
        diagnostic: it looks at every owner)."""
        return heapq.nsmallest(n, ((o, t) for o, t in self._due.items() if t < before),
                               key=lambda ot: ot[1])

    def earliest(self) -> float | None:
        """When the earliest slot with entries ends (None: nothing filed). An owner whose
        deadline moved later, or was cleared, may leave this earlier than any deadline."""
        return self._order[0] * self.tick_s if self._order else None

    def pop_due(self, now: float, limit: int | None = None) -> list[Hashable]:
        """The owners due by `now` (each once, slot by slot; at most `limit`, the others stay
        due and `earliest()` says so); their deadlines are cleared. Owners filed in a slot that
        ended whose deadline moved later are filed again."""
        order, slots, filed, due = self._order, self._slots, self._filed, self._due
        tick = self.tick_s
        if limit is None:
            limit = len(due) + 1  # never reached: each due owner comes out once
        out: list[Hashable] = []
        while order and order[0] * tick <= now:
            slot = order[0]
            entries = slots[slot]
            while entries:
                if len(out) >= limit:
                    return out  # the slot keeps the rest, still due
                owner = entries.pop()
                if filed.get(owner) != slot:
                    continue  # filed earlier since; that entry served it
                when = due.get(owner)
                if when is None:
                    del filed[owner]
                elif when <= now:
                    del filed[owner]
                    del due[owner]
                    out.append(owner)
                else:  # moved later: filed again in its slot (`set`, written out)
                    later = filed[owner] = int(when / tick) + 1
                    others = slots.get(later)
                    if others is None:
                        slots[later] = [owner]
                        heapq.heappush(order, later)
                    else:
                        others.append(owner)
            heapq.heappop(order)
            del slots[slot]
        return out
