"""Alert rules as configured in the backend's TOML `[alerts]` table (docs/alerts.md).

Every rule is a frozen value with its parameters; `parse_rules` turns the TOML table into a
`RuleSet` and refuses unknown keys, so a typo never silently disables an alert.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from geostream.signalnames import NAMES

# Overspeed: 90 km/h is the usual limit for trucks on rural roads (EU 3.5 t+), 10 s ignores a
# short overtaking manoeuvre and GNSS speed spikes.
OVERSPEED_KMH = 90.0
OVERSPEED_MIN_S = 10.0
# An episode ends once the value stays on the good side this long (no flapping around the limit).
CLEAR_S = 5.0
# GNSS noise near a fence edge is tens of metres: a side must hold this long to count.
GEOFENCE_DWELL_S = 20.0
# Five minutes without a reading while moving is a lost receiver or a dead agent, not a tunnel
# (the agent journals through tunnels and sends them afterwards).
STALE_S = 300.0
# Below this a vehicle counts as parked (GNSS speed of a standing vehicle wanders to ~2 km/h).
PARKED_KMH = 3.0
# Ten minutes without a connection: longer than a cellular dead zone on a typical route.
OFFLINE_S = 600.0


@dataclass(frozen=True)
class OverspeedRule:
    limit_kmh: float = OVERSPEED_KMH
    min_duration_s: float = OVERSPEED_MIN_S
    clear_s: float = CLEAR_S
    type: str = "overspeed"


@dataclass(frozen=True)
class SignalRule:
    """A CAN signal beyond a threshold (`above` or `below`) for at least `duration_s`."""

    name: str
    signal: str
    threshold: float
    above: bool = True
    duration_s: float = 30.0
    clear_s: float = CLEAR_S
    type: str = "signal"


@dataclass(frozen=True)
class GeofenceRule:
    dwell_s: float = GEOFENCE_DWELL_S
    enter: bool = True
    exit: bool = True
    type: str = "geofence"


@dataclass(frozen=True)
class StaleRule:
    after_s: float = STALE_S
    parked_kmh: float = PARKED_KMH
    type: str = "stale"


@dataclass(frozen=True)
class OfflineRule:
    after_s: float = OFFLINE_S
    type: str = "offline"


DEFAULT_SIGNALS = (
    SignalRule("coolant-high", NAMES.coolant, 105.0, above=True, duration_s=30.0),
    SignalRule("engine-oil-high", NAMES.oil_temp, 130.0, above=True, duration_s=30.0),
    SignalRule("fuel-low", NAMES.fuel_level, 10.0, above=False, duration_s=60.0),
)


@dataclass(frozen=True)
class RuleSet:
    """All rules; a rule that is None (or `journal`/`dtc` False) is switched off."""

    overspeed: OverspeedRule | None = field(default_factory=OverspeedRule)
    signals: tuple[SignalRule, ...] = DEFAULT_SIGNALS
    geofence: GeofenceRule | None = field(default_factory=GeofenceRule)
    stale: StaleRule | None = field(default_factory=StaleRule)
    offline: OfflineRule | None = field(default_factory=OfflineRule)
    journal: bool = True
    dtc: bool = True

    def describe(self) -> list[dict]:
        """The rules as `GET /api/alert-rules` lists them."""
        out = []
        if self.overspeed:
            out.append({"name": "overspeed", **asdict(self.overspeed)})
        for s in self.signals:
            d = asdict(s)
            d["direction"] = "above" if d.pop("above") else "below"
            out.append(d)
        if self.geofence:
            g = asdict(self.geofence)
            for rule in ("enter", "exit"):
                if g[rule]:
                    out.append({"name": f"geofence-{rule}", "type": "geofence",
                                "dwell_s": g["dwell_s"]})
        if self.stale:
            out.append({"name": "stale", **asdict(self.stale)})
        if self.offline:
            out.append({"name": "offline", **asdict(self.offline)})
        if self.journal:
            out += [{"name": "journal-dropped", "type": "event", "event": "journal-dropped"},
                    {"name": "journal-recreated", "type": "event", "event": "journal-recreated"}]
        if self.dtc:
            out.append({"name": "dtc", "type": "dtc", "event": "dtc"})
        return out


def _build(cls, raw: dict, where: str):
    if not isinstance(raw, dict):
        raise ValueError(f"[alerts.{where}] must be a table")
    raw = dict(raw)
    if raw.pop("enabled", True) is False:
        return None
    names = {f.name for f in fields(cls)} - {"type"}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"[alerts.{where}]: unknown keys {sorted(unknown)}")
    rule = cls(**raw)
    for f in fields(rule):
        value = getattr(rule, f.name)
        if f.name.endswith(("_s", "_kmh")) and not (
                isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"[alerts.{where}] {f.name} must be a number ≥ 0")
    return rule


def _signal(raw: dict, i: int) -> SignalRule:
    if not isinstance(raw, dict):
        raise ValueError("[[alerts.signal]] entries must be tables")
    raw = dict(raw)
    above, below = raw.pop("above", None), raw.pop("below", None)
    if (above is None) == (below is None):
        raise ValueError(f"[[alerts.signal]] #{i + 1}: give exactly one of above / below")
    for key in ("name", "signal"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ValueError(f"[[alerts.signal]] #{i + 1}: {key} must be text")
    threshold = above if above is not None else below
    if not isinstance(threshold, int | float):
        raise ValueError(f"[[alerts.signal]] #{i + 1}: the threshold must be a number")
    return _build(SignalRule, {**raw, "threshold": float(threshold), "above": above is not None},
                  f"signal #{i + 1}")


def parse_rules(raw: dict | None) -> RuleSet:
    """The `[alerts]` table → rules; defaults for everything not given."""
    raw = dict(raw or {})
    known = {"overspeed", "signal", "geofence", "stale", "offline", "journal", "dtc"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"[alerts]: unknown keys {sorted(unknown)}")
    d = RuleSet()
    signals = d.signals
    if "signal" in raw:
        if not isinstance(raw["signal"], list):
            raise ValueError("[[alerts.signal]] must be an array of tables")
        signals = tuple(_signal(s, i) for i, s in enumerate(raw["signal"]))
        names = [s.name for s in signals if s]
        if len(set(names)) != len(names):
            raise ValueError("[[alerts.signal]] names must be unique")
    flags = {}
    for key in ("journal", "dtc"):
        table = raw.get(key, {})
        if not isinstance(table, dict) or set(table) - {"enabled"}:
            raise ValueError(f"[alerts.{key}] takes only enabled = true|false")
        flags[key] = bool(table.get("enabled", True))
    return RuleSet(
        overspeed=_build(OverspeedRule, raw["overspeed"], "overspeed")
        if "overspeed" in raw else d.overspeed,
        signals=tuple(s for s in signals if s),
        geofence=_build(GeofenceRule, raw["geofence"], "geofence")
        if "geofence" in raw else d.geofence,
        stale=_build(StaleRule, raw["stale"], "stale") if "stale" in raw else d.stale,
        offline=_build(OfflineRule, raw["offline"], "offline") if "offline" in raw else d.offline,
        **flags,
    )
