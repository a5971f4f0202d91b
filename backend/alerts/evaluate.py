"""The sans-IO core: one vehicle's readings, in device-time order, folded into alert episodes.

`Evaluator(vehicle, rules, fences, state)` takes readings with `feed()` (callers sort them by
`(time_ms, epoch, seq)`), and `episodes()` returns every episode that closed or happened since it
was created plus those still open. `state()` is a JSON-able snapshot: an evaluator built from it
continues exactly where this one stands, which is what makes checkpoints (and so backfill and
restarts) work — see docs/alerts.md. No clock, no I/O: time is the readings' own.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from ..store.base import StoredReading
from .rules import RuleSet


@dataclass(frozen=True)
class Fence:
    """A geofence as the rules see it: an inside test and an optional own speed limit."""

    id: str
    contains: Callable[[float, float], bool]  # (lat, lon) → inside
    speed_limit_kmh: float | None = None
    # (lats, lons) → inside, each point as `contains` decides it, in one call (None: `contains`
    # point by point)
    contains_many: Callable[[Sequence[float], Sequence[float]], Sequence[bool]] | None = None

    def many(self) -> Callable[[Sequence[float], Sequence[float]], Sequence[bool]]:
        """The test of many points at once: `contains_many`, else `contains` of each."""
        if self.contains_many is not None:
            return self.contains_many
        contains = self.contains
        return lambda lats, lons: list(map(contains, lats, lons))


@dataclass(frozen=True)
class Episode:
    """One alert as the rules see it; `(rule, vehicle, subject, start_ms)` is its identity."""

    rule: str
    vehicle: str
    start_ms: int
    end_ms: int | None
    subject: str = ""  # geofence id, DTC code, journal event id; "" for one-per-vehicle rules
    peak: float | None = None
    lat: float | None = None
    lon: float | None = None
    detail: dict = field(default_factory=dict)
    # device time of the reading that decided this shape (re-evaluation windows, docs/alerts.md)
    decided_ms: int = 0

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.rule, self.vehicle, self.subject, self.start_ms)

    @property
    def state(self) -> str:
        return "open" if self.end_ms is None else "closed"


# a reading's place in device-time order: (time_ms, epoch, seq)
reading_order = attrgetter("time_ms", "epoch", "seq")


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def dtc_code(item) -> str | None:
    """A DTC's code from the shapes an agent may send: "P0301", {"code": …}, {"spn", "fmi"}."""
    if isinstance(item, str | int) and not isinstance(item, bool):
        return str(item)[:64] or None
    if isinstance(item, dict):
        if item.get("code") not in (None, ""):
            return str(item["code"])[:64]
        if item.get("spn") is not None:
            fmi = item.get("fmi")
            return f"SPN{item['spn']}" + ("" if fmi is None else f"-FMI{fmi}")
    return None


def _codes(items) -> dict[str, dict]:
    out = {}
    for item in items if isinstance(items, list) else []:
        code = dtc_code(item)
        if code is not None:
            out[code] = item if isinstance(item, dict) else {}
    return out


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _copied(v):
    """A deep copy of a state as its checkpoint's JSON would give it back (dicts, lists and
    immutable leaves; any other value by `copy.deepcopy`). A state's deep copy per checkpoint
    was a fifth of the engine's time in a fleet's first evaluations (`copy.deepcopy`'s memo
    and dispatch per object: ~5x this)."""
    t = type(v)
    if t is dict:
        return {k: (x if type(x) in _LEAVES else _copied(x)) for k, x in v.items()}
    if t is list:
        return [x if type(x) in _LEAVES else _copied(x) for x in v]
    return v if t in _LEAVES else copy.deepcopy(v)


class Evaluator:
    def __init__(self, vehicle: str, rules: RuleSet, fences: Iterable[Fence] = (),
                 state: dict | None = None, owned: bool = False):
        """`owned`: the caller hands `state` over (it is changed in place, not copied)."""
        self.vehicle = vehicle
        self.rules = rules
        self.fences = list(fences)
        s = (state if owned else copy.deepcopy(state)) if state else {}
        self._s = {"pos": s.get("pos"), "over": s.get("over"), "sig": s.get("sig", {}),
                   "fence": s.get("fence", {}), "dtc": s.get("dtc", {})}
        self._done: list[Episode] = []

    def state(self) -> dict:
        """A copy of the state (a checkpoint's): `_copied`, not `copy.deepcopy`."""
        return _copied(self._s)

    def take_state(self) -> dict:
        """The state itself, not a copy, for a caller that feeds nothing more."""
        return self._s

    # --- input ----------------------------------------------------------------------------

    def feed(self, r: StoredReading) -> None:
        if r.kind == "pos" and r.lat is not None and r.lon is not None:
            self._position(r)
        elif r.kind == "can" and r.data:
            self._signals(r)
        elif r.kind == "evt" and r.data:
            self._event(r)

    def feed_all(self, readings: Iterable[StoredReading]) -> None:
        """`feed` of each reading in turn (the same state and episodes: tests hold them equal),
        in one loop for a whole evaluation: the rules' parameters are read once, and a reading
        that cannot change a rule's state (a speed within the limit with no episode under way,
        a signal on the good side with none) costs no call. A storm's drain evaluates every
        reading of its backlog, thousands per vehicle."""
        s, rules, fences = self._s, self.rules, self.fences
        o, signal_rules, fence_rule = rules.overspeed, rules.signals, rules.geofence
        limited = [f for f in fences if f.speed_limit_kmh is not None]
        threshold = self._threshold
        for r in readings:
            kind = r.kind
            if kind == "pos":
                lat, lon = r.lat, r.lon
                if lat is None or lon is None:
                    continue
                s["pos"] = [lat, lon]
                inside = {f.id: f.contains(lat, lon) for f in fences}
                if o is not None:
                    v = r.speed_kmh
                    t = type(v)
                    speed = (v if v - v == 0 else None) if t is float else (
                        float(v) if t is int else _number(v))
                    if speed is not None:
                        limit, fence = o.limit_kmh, None
                        if limited:
                            limits = [(f.speed_limit_kmh, f.id) for f in limited if inside[f.id]]
                            if limits:
                                limit, fence = min(limits)
                        bad = speed > limit
                        if bad or s["over"] is not None:
                            s["over"] = threshold(
                                "overspeed", "", s["over"], r.time_ms, speed, bad, True,
                                o.min_duration_s, o.clear_s, {"limit_kmh": limit,
                                                              "geofence": fence})
                if fence_rule is not None and (inside or s["fence"]):
                    self._geofences(r, inside)
            elif kind == "can":
                data = r.data
                if not data:
                    continue
                states = s["sig"]
                for rule in signal_rules:
                    v = data.get(rule.signal)
                    t = type(v)
                    value = (v if v - v == 0 else None) if t is float else (
                        float(v) if t is int else _number(v))
                    if value is None:
                        continue
                    bad = value > rule.threshold if rule.above else value < rule.threshold
                    st = states.get(rule.name)
                    if bad or st is not None:
                        states[rule.name] = threshold(
                            rule.name, "", st, r.time_ms, value, bad, rule.above,
                            rule.duration_s, rule.clear_s,
                            {"signal": rule.signal, "threshold": rule.threshold,
                             "direction": "above" if rule.above else "below"})
                    else:
                        states[rule.name] = None  # as `_signals`: the rule's key, no episode
            elif kind == "evt" and r.data:
                self._event(r)

    def _position(self, r: StoredReading) -> None:
        self._s["pos"] = [r.lat, r.lon]
        inside = {f.id: f.contains(r.lat, r.lon) for f in self.fences}
        o = self.rules.overspeed
        speed = _number(r.speed_kmh)
        if o is not None and speed is not None:
            limits = [(f.speed_limit_kmh, f.id) for f in self.fences
                      if inside[f.id] and f.speed_limit_kmh is not None]
            limit, fence = min(limits) if limits else (o.limit_kmh, None)
            self._s["over"] = self._threshold(
                "overspeed", "", self._s["over"], r.time_ms, speed, speed > limit, True,
                o.min_duration_s, o.clear_s, {"limit_kmh": limit, "geofence": fence})
        if self.rules.geofence is not None:
            self._geofences(r, inside)

    def _signals(self, r: StoredReading) -> None:
        for rule in self.rules.signals:
            value = _number(r.data.get(rule.signal))
            if value is None:
                continue
            bad = value > rule.threshold if rule.above else value < rule.threshold
            self._s["sig"][rule.name] = self._threshold(
                rule.name, "", self._s["sig"].get(rule.name), r.time_ms, value, bad, rule.above,
                rule.duration_s, rule.clear_s,
                {"signal": rule.signal, "threshold": rule.threshold,
                 "direction": "above" if rule.above else "below"})

    def _event(self, r: StoredReading) -> None:
        name = r.data.get("name")
        data = {k: v for k, v in r.data.items() if k != "name"}
        if name in ("journal-dropped", "journal-recreated") and self.rules.journal:
            counts = data.get("counts")
            lost = sum(v for v in counts.values() if _number(v) is not None) \
                if isinstance(counts, dict) else None
            self._instant(name, f"{r.epoch}/{r.seq}", r.time_ms, lost, data)
        elif name == "dtc" and self.rules.dtc:
            self._dtc(r.time_ms, data)

    # --- rules ----------------------------------------------------------------------------

    def _threshold(self, rule: str, subject: str, st: dict | None, t: int, value: float,
                   bad: bool, higher_is_worse: bool, min_s: float, clear_s: float,
                   detail: dict) -> dict | None:
        """One step of a "value beyond a limit for a while" episode (overspeed, signals).

        Opens once bad readings span `min_s`; closes once good readings span `clear_s`
        (end: the first good reading); a candidate that never lasted `min_s` is forgotten.
        """
        if bad:
            if st is None:
                pos = self._s["pos"] or [None, None]
                st = {"start": t, "peak": value, "lat": pos[0], "lon": pos[1], "open": False,
                      "ok": None, "detail": detail}
            else:
                st["peak"] = max(st["peak"], value) if higher_is_worse else min(st["peak"], value)
                st["ok"] = None
            if not st["open"] and t - st["start"] >= min_s * 1000:
                st["open"], st["decided"] = True, t
            return st
        if st is None or not st["open"]:
            return None
        if st["ok"] is None:
            st["ok"] = t
        if t - st["ok"] >= clear_s * 1000:
            self._done.append(self._from_state(rule, subject, st, st["ok"], t))
            return None
        return st

    def _from_state(self, rule: str, subject: str, st: dict, end: int | None,
                    decided: int | None = None) -> Episode:
        return Episode(rule, self.vehicle, st["start"], end, subject, st.get("peak"),
                       st.get("lat"), st.get("lon"), st.get("detail") or {},
                       st.get("decided", st["start"]) if decided is None else decided)

    def _instant(self, rule: str, subject: str, t: int, peak, detail: dict,
                 lat: float | None = None, lon: float | None = None,
                 decided: int | None = None) -> None:
        if lat is None and self._s["pos"]:
            lat, lon = self._s["pos"]
        self._done.append(Episode(rule, self.vehicle, t, t, subject, peak, lat, lon, detail,
                                  t if decided is None else decided))

    def _geofences(self, r: StoredReading, inside: dict[str, bool]) -> None:
        g = self.rules.geofence
        states = self._s["fence"]
        for fid in list(states):
            if fid not in inside:  # geofence deleted
                del states[fid]
        for fid, now_in in inside.items():
            fs = states.get(fid)
            if fs is None:  # first position we know against this fence: a side, no event
                states[fid] = {"in": now_in, "cand": None}
            elif now_in == fs["in"]:
                fs["cand"] = None  # back on the confirmed side: GNSS noise, no event
            else:
                if fs["cand"] is None:
                    fs["cand"] = [r.time_ms, r.lat, r.lon]
                if r.time_ms - fs["cand"][0] >= g.dwell_s * 1000:
                    fs["in"] = now_in
                    t, lat, lon = fs["cand"]
                    fs["cand"] = None
                    if (g.enter if now_in else g.exit):
                        rule = "geofence-enter" if now_in else "geofence-exit"
                        self._instant(rule, fid, t, None, {"geofence": fid}, lat, lon,
                                      r.time_ms)

    def _dtc(self, t: int, data: dict) -> None:
        """docs/protocol.md §4: `dtcs` is a controller's complete set (per proto, src and set);
        `active` is accepted alike, and `new`/`cleared` lists as changes."""
        open_ = self._s["dtc"]
        scope = "/".join(str(data.get(k, "")) for k in ("proto", "src", "set"))
        mine = {key.split("|", 1)[1]: key for key in open_ if key.split("|", 1)[0] == scope}
        full = data.get("dtcs", data.get("active"))
        if full is not None:
            now = _codes(full)
            gone = [c for c in mine if c not in now]
        else:
            now = {**{c: {} for c in mine}, **_codes(data.get("new") or data.get("added"))}
            gone = [c for c in _codes(data.get("cleared") or data.get("removed")) if c in mine]
        for code in gone:
            self._done.append(self._from_state("dtc", code, open_.pop(mine[code]), t, t))
        pos = self._s["pos"] or [None, None]
        for code, item in now.items():
            if f"{scope}|{code}" not in open_:
                detail = {k: v for k, v in item.items() if k != "code"}
                for k in ("proto", "src", "set", "bus", "source", "lamps"):
                    if k in data and k not in detail:
                        detail[k] = data[k]
                open_[f"{scope}|{code}"] = {"start": t, "peak": _number(item.get("oc")),
                                            "lat": pos[0], "lon": pos[1],
                                            "detail": {"code": code, **detail}}

    # --- output ---------------------------------------------------------------------------

    def episodes(self) -> list[Episode]:
        """Episodes closed (or instant) since this evaluator was made, then the open ones."""
        out = list(self._done)
        if self._s["over"] and self._s["over"]["open"]:
            out.append(self._from_state("overspeed", "", self._s["over"], None))
        for name, st in sorted(self._s["sig"].items()):
            if st and st["open"]:
                out.append(self._from_state(name, "", st, None))
        for scoped, st in sorted(self._s["dtc"].items()):
            out.append(self._from_state("dtc", scoped.split("|", 1)[1], st, None))
        return out
