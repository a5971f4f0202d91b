"""The common case of a live evaluation, decided without an `Evaluator`: readings that cannot
change any alert.

At 1 Hz almost every vehicle's batch is one reading that moves the vehicle and changes nothing
else: a speed within the limit with no overspeed under way, every geofence on its settled
side, every signal on its good side with no episode. Feeding such readings to an `Evaluator`
changes its state only in two ways that no rule reads before the next change — the vehicle's
position (`pos`, where a later episode starts) and the empty key a signal rule gets when it
first sees its signal — and produces no episode. `QuietRules.feed` decides that for a
vehicle's readings of one tick and, when it holds, makes exactly those two changes in place;
otherwise it changes nothing and the engine runs the full evaluation. Pure: no clock, no I/O
(tests/unit/backend/alerts/test_quiet.py holds it equal to `Evaluator.feed_all`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..store.base import StoredReading
from .evaluate import Fence, _number
from .rules import RuleSet


class QuietRules:
    """The rules' parameters and the geofences, unpacked once per set of geofences."""

    __slots__ = ("contains_many", "fence_ids", "fences", "geofence", "limited", "limited_at",
                 "overspeed", "signals", "speed_view")

    def __init__(self, rules: RuleSet, fences: Sequence[Fence],
                 speed_view: Callable[[float], float] | None = None):
        """`speed_view`: the store's rounding of a speed as it reads it back (PostgreSQL's
        float4), so the decision is the one an evaluation of the stored rows makes."""
        self.overspeed = rules.overspeed
        self.geofence = rules.geofence is not None
        self.fences = [(f.id, f.contains) for f in fences]
        self.fence_ids = frozenset(f.id for f in fences)
        self.limited = [(f.speed_limit_kmh, f.id, f.contains) for f in fences
                        if f.speed_limit_kmh is not None]
        self.limited_at = [(f.speed_limit_kmh, i) for i, f in enumerate(fences)
                           if f.speed_limit_kmh is not None]
        self.contains_many = [f.many() for f in fences]
        self.signals = [(r.name, r.signal, r.threshold, r.above) for r in rules.signals]
        self.speed_view = speed_view

    def feed(self, s: dict, readings: Sequence[StoredReading], before_ms: int) -> bool:
        """`readings` (one vehicle's, ascending by `(time_ms, epoch, seq)`, all before
        `before_ms`) fed to the evaluator state `s`: True when they change no alert (`s` is then
        what `Evaluator.feed_all` leaves, changed in place); False when one might, or they are
        out of order or reach `before_ms` (`s` untouched: the full evaluation decides)."""
        o, fences, limited, view = self.overspeed, self.fences, self.limited, self.speed_view
        over = s["over"]
        sides = s["fence"] if self.geofence and (fences or s["fence"]) else None
        settled = sides is None or (len(sides) == len(fences) and sides.keys() == self.fence_ids)
        states = s["sig"]
        pos = None
        keys: list[str] | None = None
        prev = None
        for r in readings:
            t = r.time_ms
            if prev is not None and (t < prev.time_ms or (t == prev.time_ms and (
                    r.epoch, r.seq) < (prev.epoch, prev.seq))):
                return False
            prev = r
            kind = r.kind
            if kind == "pos":
                lat, lon = r.lat, r.lon
                if lat is None or lon is None:
                    continue
                pos = (lat, lon)
                if not settled:
                    return False  # a side to learn, or a deleted geofence to drop
                if sides is not None:
                    for fid, contains in fences:
                        fs = sides[fid]
                        if fs["cand"] is not None or fs["in"] != contains(lat, lon):
                            return False
                if o is not None:
                    v = r.speed_kmh
                    if v is None:
                        continue
                    if view is not None:
                        v = view(v)
                    tv = type(v)
                    speed = (v if v - v == 0 else None) if tv is float else (
                        float(v) if tv is int else _number(v))
                    if speed is None:
                        continue
                    if over is not None:
                        return False
                    limit = None  # the lowest limit of the geofences it is in, else the rule's
                    for fl, _fid, contains in limited:
                        if (limit is None or fl < limit) and contains(lat, lon):
                            limit = fl
                    if speed > (o.limit_kmh if limit is None else limit):
                        return False
            elif kind == "can":
                data = r.data
                if not data:
                    continue
                for name, signal, threshold, above in self.signals:
                    v = data.get(signal)
                    if v is None:
                        continue
                    tv = type(v)
                    value = (v if v - v == 0 else None) if tv is float else (
                        float(v) if tv is int else _number(v))
                    if value is None:
                        continue
                    if (value > threshold if above else value < threshold):
                        return False
                    if name in states:
                        if states[name] is not None:
                            return False
                    elif keys is None:
                        keys = [name]
                    else:
                        keys.append(name)
            elif kind == "evt" and r.data:
                return False  # events are rare: the evaluator decides
        if prev is not None and prev.time_ms >= before_ms:
            return False
        if pos is not None:
            s["pos"] = [pos[0], pos[1]]
        if keys is not None:
            for name in keys:
                states[name] = None
        return True

    def feed_one(self, s: dict, r: StoredReading, before_ms: int,
                 inside: Sequence[bool] | None = None) -> bool:
        """`feed(s, [r], before_ms)` for a position (the 1 Hz tick's reading of a vehicle),
        without the loop, the order checks and the signal rules' bookkeeping that one
        position needs not: `feed` for any other kind. `inside`: whether the position is
        inside each of `fences`, in their order, when the caller tested the tick's positions
        together (`inside_many`); else tested here."""
        if r.kind != "pos" or r.time_ms >= before_ms:
            return self.feed(s, (r,), before_ms)
        lat, lon = r.lat, r.lon
        if lat is None or lon is None:
            return True
        fences = self.fences
        if self.geofence and (fences or s["fence"]):
            sides = s["fence"]
            if len(sides) != len(fences) or sides.keys() != self.fence_ids:
                return False  # a side to learn, or a deleted geofence to drop
            if inside is None:
                for fid, contains in fences:
                    fs = sides[fid]
                    if fs["cand"] is not None or fs["in"] != contains(lat, lon):
                        return False
            else:
                for (fid, _), now_in in zip(fences, inside, strict=True):
                    fs = sides[fid]
                    if fs["cand"] is not None or fs["in"] != now_in:
                        return False
        o = self.overspeed
        if o is not None:
            v = r.speed_kmh
            if v is not None:
                if self.speed_view is not None:
                    v = self.speed_view(v)
                tv = type(v)
                speed = (v if v - v == 0 else None) if tv is float else (
                    float(v) if tv is int else _number(v))
                if speed is not None:
                    if s["over"] is not None:
                        return False
                    limit = None  # the lowest limit of the geofences it is in, else the rule's
                    if inside is None:
                        for fl, _fid, contains in self.limited:
                            if (limit is None or fl < limit) and contains(lat, lon):
                                limit = fl
                    else:
                        for fl, i in self.limited_at:
                            if (limit is None or fl < limit) and inside[i]:
                                limit = fl
                    if speed > (o.limit_kmh if limit is None else limit):
                        return False
        s["pos"] = [lat, lon]
        return True

    def inside_many(self, lats: Sequence[float], lons: Sequence[float]
                    ) -> list[tuple[bool, ...]]:
        """Whether each point is inside each of `fences` (a tuple per point, in the fences'
        order), each geofence tested on all points in one call (`Fence.contains_many`: a
        polygon's test costs ~12 µs a call one point at a time, ~0.3 µs a point together)."""
        if not self.contains_many:
            return [()] * len(lats)
        return list(zip(*(many(lats, lons) for many in self.contains_many),
                        strict=True))
