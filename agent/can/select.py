"""Sans-IO signal selection: which decoded values become readings, and when.

Per signal (`Rule`): `min_interval_ms` (at most one value per interval), `deadband` (record only
when the value moved by more than this since the last recorded value; 0 = on any change;
None = every value), `max_interval_ms` (with a deadband: record anyway after this long, so a
steady value still shows up). Bus-wide `snapshot_hz`: all selected signals' latest values at a
fixed rate, leaving out values older than `snapshot_max_age_ms`. Time is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    min_interval_ms: int = 0
    deadband: float | None = None
    max_interval_ms: int | None = None


DEFAULT_RULE = Rule()


class Selector:
    def __init__(
        self,
        rules: dict[str, Rule] | None = None,
        default: Rule = DEFAULT_RULE,
        snapshot_hz: float = 0.0,
        snapshot_max_age_ms: int = 5000,
    ):
        # rules equal to DEFAULT_RULE become that very object: `is` marks "record every value"
        # on the hot path, and a selector of such rules only passes values through
        def canonical(rule: Rule) -> Rule:
            return DEFAULT_RULE if rule == DEFAULT_RULE else rule

        self.rules = {key: canonical(rule) for key, rule in (rules or {}).items()}
        self.default = canonical(default)
        self._passthrough = self.default is DEFAULT_RULE and all(
            rule is DEFAULT_RULE for rule in self.rules.values())
        self._last: dict[str, list] = {}  # key -> [ts recorded, value recorded]
        self._latest: dict[str, tuple[int, object]] = {}  # key -> (ts seen, value)
        self.snapshot_period_ms = 1000.0 / snapshot_hz if snapshot_hz > 0 else 0.0
        self.snapshot_max_age_ms = snapshot_max_age_ms
        self._track_latest = bool(self.snapshot_period_ms)
        self._next_snapshot = None if self._track_latest else float("inf")

    def offer(self, ts_ms: int, values: dict) -> dict:
        """Values from one frame; returns those to record now (possibly empty)."""
        if self._track_latest:
            latest = self._latest
            for key, value in values.items():
                latest[key] = (ts_ms, value)
        if self._passthrough:
            return values
        out = {}
        rules = self.rules
        last = self._last
        for key, value in values.items():
            rule = rules.get(key, self.default)
            if rule is DEFAULT_RULE:  # every value, no state to keep
                out[key] = value
                continue
            state = last.get(key)
            if state is None:
                last[key] = [ts_ms, value]
                out[key] = value
                continue
            dt = ts_ms - state[0]
            if 0 <= dt < rule.min_interval_ms:
                continue
            band = rule.deadband
            if band is not None and (rule.max_interval_ms is None or dt < rule.max_interval_ms):
                previous = state[1]
                if type(value) is str or type(previous) is str:
                    if value == previous:
                        continue
                elif abs(value - previous) <= band:
                    continue
            state[0] = ts_ms
            state[1] = value
            out[key] = value
        return out

    def quiet_until(self, ts_ms: int, keys) -> float:
        """After `offer(ts_ms, values)`: until when `offer()` would drop every one of `keys`
        for their `min_interval_ms` (`ts_ms` if not at all: a key without an interval or not
        yet recorded, or snapshots, which need every latest value)."""
        if self._track_latest or self._passthrough:
            return ts_ms
        until = float("inf")
        rules = self.rules
        last = self._last
        for key in keys:
            rule = rules.get(key, self.default)
            state = last.get(key)
            if state is None or rule.min_interval_ms <= 0:
                return ts_ms
            until = min(until, state[0] + rule.min_interval_ms)
        return until if until != float("inf") else ts_ms

    def snapshot(self, ts_ms: int) -> dict | None:
        """All fresh latest values when a snapshot is due at `ts_ms`, else None."""
        nxt = self._next_snapshot
        if nxt is None:  # first call arms the timer
            self._next_snapshot = ts_ms + self.snapshot_period_ms
            return None
        if ts_ms < nxt:
            if ts_ms < nxt - 2 * self.snapshot_period_ms:  # time went back (replay loop)
                self._next_snapshot = ts_ms + self.snapshot_period_ms
            return None
        nxt += self.snapshot_period_ms
        if nxt <= ts_ms:  # fell behind (replay jump, suspend): restart the grid from now
            nxt = ts_ms + self.snapshot_period_ms
        self._next_snapshot = nxt
        oldest = ts_ms - self.snapshot_max_age_ms
        values = {k: v for k, (t, v) in self._latest.items() if t >= oldest}
        return values or None

    @property
    def next_snapshot_ms(self) -> float:
        n = self._next_snapshot
        return float("-inf") if n is None else n
