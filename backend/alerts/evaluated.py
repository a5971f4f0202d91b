"""Which readings a vehicle's cached alert state already includes, by sequence number (pure).

A reading the agent sends again after a lost ack is stored once (the unique key) but reaches
the engine again; if its state already includes it, evaluating it again would only replay
from a checkpoint (its time is behind the state's). The agent numbers readings one by one in
the order it records them, so what a state includes is nearly always one run of sequence
numbers of the newest epoch: `low..high`, less a few `holes` (a batch evaluated before the
backlog just below it, an invalid reading stored apart). Anything else is "not known": the
engine evaluates it as before, which is always correct, only dearer.
"""

from __future__ import annotations

from collections.abc import Iterable

# Sequence numbers below the highest evaluated one that are not in the state yet, kept per
# vehicle: the alert engine evaluates a gap of at most HOLD_GAP (16) at once, so a few gaps fit;
# past this the lowest are forgotten (a repeat there replays, as before).
MAX_HOLES = 64

Span = tuple[int | None, int, int, frozenset[int] | None]  # epoch, low, high, holes
NOTHING: Span = (None, 0, 0, None)


def includes(span: Span, epoch: int, seq: int) -> bool:
    """Whether the state of `span` already includes reading (epoch, seq)."""
    e, low, high, holes = span
    return epoch == e and low <= seq <= high and (holes is None or seq not in holes)


def noted(span: Span, keys: Iterable[tuple[int, int]]) -> Span:
    """`span` after the readings `keys` ((epoch, seq)) were evaluated into its state."""
    epoch, low, high, frozen = span
    holes = set(frozen) if frozen else set()
    for e, s in sorted(keys):
        if epoch is None or e > epoch:  # a newer epoch (a new journal): only it counts
            epoch, low, high = e, s, s
            holes.clear()
        elif e < epoch:
            continue
        elif s > high:
            if s - high - 1 > MAX_HOLES:  # too far ahead: what came before is forgotten
                low = s
                holes.clear()
            else:
                holes.update(range(high + 1, s))
            high = s
        elif s >= low:
            holes.discard(s)
        elif low - s - 1 + len(holes) <= MAX_HOLES:  # just below the run: widen it down
            holes.update(range(s + 1, low))
            low = s
    if len(holes) > MAX_HOLES:
        dropped = sorted(holes)[:len(holes) - MAX_HOLES]
        low = dropped[-1] + 1
        holes.difference_update(dropped)
    return epoch, low, high, frozenset(holes) if holes else None


def longest_run(keys: Iterable[tuple[int, int]]) -> tuple[int, int, int] | None:
    """The longest run of consecutive sequence numbers of one epoch among `keys` ((epoch,
    seq)), as (epoch, low, high); None without keys. Every reading of the run is among `keys`:
    a replay leaves those out of its store read (the engine holds them already)."""
    best: tuple[int, int, int] | None = None
    run: tuple[int, int, int] | None = None
    for e, s in sorted(set(keys)):
        if run is not None and e == run[0] and s == run[2] + 1:
            run = (e, run[1], s)
        else:
            run = (e, s, s)
        if best is None or run[2] - run[1] > best[2] - best[1]:
            best = run
    return best
