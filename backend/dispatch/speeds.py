"""Speeds learned from the fleet's own history: per road segment and hour of the week, from
positions matched to the road graph. ETAs use them where enough was seen, the road classes'
speeds elsewhere, and say so in their basis (docs/planning.md, "Learned speeds").

Matching: each pair of consecutive fixes of a vehicle (1–60 s apart, ≥ 3 m, 2–160 km/h) is
one observation of the segment nearest to their midpoint, when both fixes are within
`MATCH_M` of that segment (a fix pair that leaves the road or jumps between roads tells
nothing). Nearest-segment matching, not a hidden-Markov map matcher: on a dense street grid a
pair near a junction may be counted on the crossing street; `MIN_SAMPLES` keeps one such pair
from deciding a segment. A segment's learned pace (seconds per metre) is the seconds of its
observations over their metres — distance-weighted, as travel times add up: the mean of
per-sample paces over-weights the slow seconds (a vehicle spends more fixes where it is slow)
and was measured 1.3–2.6× worse than the road classes on the ETA bench.
Hours of the week are UTC (`hour_of_week`), Monday 00:00–01:00 is 0.

Pure: `SpeedLearner` folds tracks (lists of (t_ms, lat, lon)), `LearnedSpeeds` answers the
segment times of one hour; `save`/`load` keep them beside the graph's cache (by its hash).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .roads import haversine_m

HOURS_OF_WEEK = 168
# A fix pair whose midpoint's segment is farther than this from either fix is not on it
# (GNSS error in a street canyon is ~10 m; 20 m keeps parallel streets apart).
MATCH_M = 20.0
# Fix pairs farther apart than this in time are not one traversal (a tunnel, a stop).
MAX_GAP_S = 60.0
MIN_MOVE_M = 3.0  # less: standing, and GNSS wander (~1–3 m) is no speed
MIN_KMH, MAX_KMH = 2.0, 160.0  # outside: a jam's standstill or a bad fix
# Observations a segment needs before its learned time replaces its class speed, per hour of
# the week, else over all hours of the week.
MIN_SAMPLES = 3
FORMAT = 1
# Hours' routing matrices kept (each with its shortest-path trees to next stops, up to
# matrix.TREE_CACHE_BYTES): this hour and the last, so that memory stays one hour's worth.
HOURS_KEPT = 2


def hour_of_week(t_ms: int) -> int:
    """UTC hour of the week, Monday 00:00 = 0 (1970-01-01 was a Thursday: day 3)."""
    hours = t_ms // 3_600_000
    return int((hours + 3 * 24) % HOURS_OF_WEEK)


@dataclass
class LearnedSpeeds:
    """Observation sums per (segment, hour of week): `count`, `seconds` and `metres`."""

    graph_sha256: str
    segment_count: int
    count: dict  # (segment, hour) → observations
    seconds_sum: dict  # (segment, hour) → seconds driven in them
    metres_sum: dict  # (segment, hour) → metres driven in them

    @property
    def segments_seen(self) -> int:
        return len({s for s, _ in self.count})

    def seconds(self, static_s: np.ndarray, seg_m: np.ndarray, hour: int
                ) -> tuple[np.ndarray, int]:
        """Segment travel times for `hour`: learned where `MIN_SAMPLES` were seen in that
        hour, else over the whole week, else `static_s`; and how many segments are learned."""
        out = static_s.astype(np.float64).copy()
        week: dict[int, list] = {}
        for key, c in self.count.items():
            w = week.setdefault(key[0], [0, 0.0, 0.0])
            w[0] += c
            w[1] += self.seconds_sum[key]
            w[2] += self.metres_sum[key]
        learned = 0
        for s, (c, secs, metres) in week.items():
            if self.count.get((s, hour), 0) >= MIN_SAMPLES:
                pace = self.seconds_sum[(s, hour)] / self.metres_sum[(s, hour)]
            elif c >= MIN_SAMPLES:
                pace = secs / metres
            else:
                continue
            out[s] = float(seg_m[s]) * pace
            learned += 1
        return out, learned

    def save(self, path: Path) -> None:
        keys = np.array(sorted(self.count), dtype=np.int64).reshape(-1, 2)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, format=np.array([FORMAT]), sha=np.array([self.graph_sha256]),
                 segments=np.array([self.segment_count]), keys=keys,
                 count=np.array([self.count[tuple(k)] for k in keys.tolist()], dtype=np.int64),
                 seconds=np.array([self.seconds_sum[tuple(k)] for k in keys.tolist()]),
                 metres=np.array([self.metres_sum[tuple(k)] for k in keys.tolist()]))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, graph_sha256: str) -> LearnedSpeeds | None:
        """The learned speeds of this graph, or None (absent, damaged, another graph)."""
        try:
            with np.load(path) as z:
                if int(z["format"][0]) != FORMAT or str(z["sha"][0]) != graph_sha256:
                    return None
                keys = [tuple(k) for k in z["keys"].tolist()]
                return cls(graph_sha256, int(z["segments"][0]),
                           dict(zip(keys, z["count"].tolist(), strict=True)),
                           dict(zip(keys, z["seconds"].tolist(), strict=True)),
                           dict(zip(keys, z["metres"].tolist(), strict=True)))
        except (OSError, KeyError, ValueError):
            return None


def speeds_path(cache_dir: Path, graph_sha256: str) -> Path:
    return cache_dir / f"{graph_sha256}.speeds.npz"


class SpeedLearner:
    """Folds vehicles' tracks into per-segment, per-hour observations on one road matrix."""

    def __init__(self, road_matrix):
        self.rm = road_matrix
        g = road_matrix.graph
        self.speeds = LearnedSpeeds(g.sha256, g.segment_count, {}, {}, {})
        self.pairs = 0  # fix pairs looked at
        self.matched = 0  # observations kept

    def add_track(self, track: list[tuple[int, float, float]]) -> None:
        """One vehicle's positions (t_ms, lat, lon), in time order."""
        if len(track) < 2:
            return
        t = np.array([p[0] for p in track], dtype=np.int64)
        lat = np.array([p[1] for p in track], dtype=np.float64)
        lon = np.array([p[2] for p in track], dtype=np.float64)
        dt = (t[1:] - t[:-1]) / 1000.0
        d = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
        self.pairs += len(dt)
        with np.errstate(divide="ignore", invalid="ignore"):
            kmh = d / dt * 3.6
        ok = (dt >= 1) & (dt <= MAX_GAP_S) & (d >= MIN_MOVE_M) & (kmh >= MIN_KMH) \
            & (kmh <= MAX_KMH)
        if not ok.any():
            return
        i = np.nonzero(ok)[0]
        seg, off = self.rm.nearest((lon[i] + lon[i + 1]) / 2, (lat[i] + lat[i + 1]) / 2)
        near = off <= MATCH_M
        if not near.any():
            return
        # both fixes near the midpoint's segment (not a jump between parallel roads)
        i, seg = i[near], seg[near]
        off_a = self.rm.distance_to(seg, lon[i], lat[i])
        off_b = self.rm.distance_to(seg, lon[i + 1], lat[i + 1])
        near = (off_a <= MATCH_M) & (off_b <= MATCH_M)
        sp = self.speeds
        for k in np.nonzero(near)[0]:
            j = i[k]
            key = (int(seg[k]), hour_of_week(int(t[j])))
            sp.count[key] = sp.count.get(key, 0) + 1
            sp.seconds_sum[key] = sp.seconds_sum.get(key, 0.0) + float(dt[j])
            sp.metres_sum[key] = sp.metres_sum.get(key, 0.0) + float(d[j])
            self.matched += 1


class LearnedTravel:
    """Travel times on the road graph with learned speeds for the hour asked (`at(t_ms)`):
    one routing matrix per hour of the week, built when first asked; the `HOURS_KEPT` most
    recently asked are kept."""

    def __init__(self, road_matrix, speeds: LearnedSpeeds):
        self.rm, self.speeds = road_matrix, speeds
        self.basis = road_matrix.basis
        self._by_hour: dict[int, object] = {}

    def at(self, t_ms: int):
        hour = hour_of_week(t_ms)
        m = self._by_hour.pop(hour, None)
        if m is None:
            g = self.rm.graph
            seconds, learned = self.speeds.seconds(g.seg_s, g.seg_m, hour)
            basis = (f"{self.rm.basis}, speeds learned from the fleet's history on {learned} "
                     f"of {g.segment_count} segments (hour {hour} of the week, UTC), "
                     "road classes elsewhere")
            m = self.rm.with_seconds(seconds, basis)
        self._by_hour[hour] = m  # most recently asked last
        while len(self._by_hour) > HOURS_KEPT:
            self._by_hour.pop(next(iter(self._by_hour)))
        return m

    def matrix(self, points):
        """Without a time: the road classes' speeds (as planning uses them)."""
        return self.rm.matrix(points)
