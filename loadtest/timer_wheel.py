"""One timer structure for every deadline of a load-generator process (sans-IO: the caller
passes `now` and arms one loop timer for `earliest()`).

Thousands of simulated vehicles move their deadlines on every input (a QUIC timer after each
send and receive, the uplink machine's pacing after each batch): in a heap
(backend/edge_core.py `Deadlines`) each move is a push and a later pop of the superseded entry,
which the client process's profile showed as a tenth of its time. Here deadlines fall into
slots of `tick_s` (a deadline fires at the end of its slot: at most one tick late, never
early), an owner is filed once, and a deadline that moves later stays filed where it was
until that slot comes and files it again: the common move costs two dict writes.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable


class TimerWheel:
    """The next deadline of many owners, served a slot of `tick_s` seconds at a time."""

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

    def earliest(self) -> float | None:
        """When the earliest slot with entries ends (None: nothing filed)."""
        return self._order[0] * self.tick_s if self._order else None

    def pop_due(self, now: float) -> list[Hashable]:
        """The owners due by `now` (each once); their deadlines are cleared. Owners filed in a
        slot that ended whose deadline moved later are filed again."""
        order, slots, filed, due = self._order, self._slots, self._filed, self._due
        tick = self.tick_s
        out: list[Hashable] = []
        while order and order[0] * tick <= now:
            slot = heapq.heappop(order)
            for owner in slots.pop(slot):
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
                    entries = slots.get(later)
                    if entries is None:
                        slots[later] = [owner]
                        heapq.heappush(order, later)
                    else:
                        entries.append(owner)
        return out
