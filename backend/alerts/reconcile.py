"""Stored alerts vs the episodes an evaluation computed: what to upsert, move and retract
(docs/alerts.md). Pure: the engine writes the result in one transaction."""

from __future__ import annotations

from ..store.base import StoredAlert
from .evaluate import Episode


def _same(a: StoredAlert, e: Episode) -> bool:
    return (a.end_ms, a.peak, a.state, a.lat, a.lon, a.detail, a.decided_ms) == (
        e.end_ms, e.peak, e.state, e.lat, e.lon, e.detail, e.decided_ms)


def _overlap(a: StoredAlert, e: Episode) -> bool:
    inf = float("inf")
    a_end = inf if a.end_ms is None else a.end_ms
    e_end = inf if e.end_ms is None else e.end_ms
    return a.start_ms <= e_end and e.start_ms <= a_end


def reconcile(stored: dict[tuple, StoredAlert], episodes: dict[tuple, Episode]):
    """Stored alerts vs computed episodes → (upserts, moves, retractions).

    An episode whose start moved (a backfill showed it began earlier, or later) takes over the
    stored alert it overlaps, keeping its id and acknowledgement: one alert per episode."""
    upserts, moves = [], []
    unmatched = {k: a for k, a in stored.items() if k not in episodes}
    for key, e in episodes.items():
        if key in stored:
            if not _same(stored[key], e):
                upserts.append(e)
            continue
        old = next((a for a in unmatched.values() if a.state != "retracted"
                    and (a.rule, a.subject) == (e.rule, e.subject) and _overlap(a, e)), None)
        if old is None:
            upserts.append(e)
        else:
            moves.append((old.key, e))
            del unmatched[old.key]
    retract = [k for k, a in unmatched.items() if a.state != "retracted"]
    return upserts, moves, retract
