"""Travel-time matrices between points: on the road graph, or straight-line × a detour factor.

`RoadMatrix(graph)` snaps each point onto the nearest drivable segment (shapely's STRtree on
a local metric plane), then runs scipy's C Dijkstra (`scipy.sparse.csgraph.dijkstra`) from
the segment ends a point can leave by, and combines: leave the point along its segment, drive
node to node, arrive along the target's segment (one-ways respected at both ends, two points
on one segment joined directly). Chosen over igraph and networkx by measurement
(docs/benchmarks.md, "Dispatch"): on the Helsinki extract csgraph computed a 200-point matrix
in the least time and needs no graph object beyond a CSR matrix.

`StraightLineMatrix` is the fallback without a road network. Every `Matrix` says its `basis`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backend.dispatch.roads import (
    EARTH_RADIUS_M,
    RoadGraph,
    adjacency,
    equirectangular,
    haversine_m,
)

# (their own module, so that what only catches the error need not load numpy; kept here too)
from backend.dispatch.snap import MAX_SNAP_M as MAX_SNAP_M
from backend.dispatch.snap import SnapError as SnapError

# Between the point and the road (yard, car park, kerb) a vehicle moves at walking-ish speed.
ACCESS_SPEED_KMH = 10.0
# A snapped point this close to a segment's end counts as on that node (float noise of the
# projection is micrometres; a centimetre is far below any map's precision).
AT_NODE_M = 0.01
# Without a road network: roads are on average ~1.3× longer than the straight line in towns
# (the usual circuity figure) and urban delivery driving averages ~30 km/h.
DETOUR_FACTOR = 1.3
STRAIGHT_LINE_SPEED_KMH = 30.0
# Rows of Dijkstra output held at once: bounds memory to ~64 MB on a country-sized graph.
DIJKSTRA_ROW_BYTES = 64 * 1024**2
# Points per matrix: a 2,000 × 2,000 float matrix is 32 MB; larger plans are split upstream.
MAX_MATRIX_POINTS = 2000
# Shortest-path trees to live ETAs' next stops kept (`RoadMatrix.leg`): one float64 per node
# each (central Helsinki: 13 KB; a million-node country: 8 MB), bounded in bytes so that a
# large graph keeps fewer: 10,000 vehicles' next stops on central Helsinki fit.
TREE_CACHE_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class Matrix:
    """`seconds[i][j]`: travel time from point i to point j; `basis` says how it was computed."""

    seconds: np.ndarray
    basis: str

    def as_int_seconds(self) -> list[list[int]]:
        return np.rint(self.seconds).astype(np.int64).tolist()


@dataclass(frozen=True)
class Snapped:
    """Points placed on segments: segment index, fraction along a→b, metres off the road."""

    segment: np.ndarray
    fraction: np.ndarray
    offroad_m: np.ndarray


class StraightLineMatrix:
    """Great-circle distance × `DETOUR_FACTOR` at `STRAIGHT_LINE_SPEED_KMH`."""

    basis = (f"straight line × {DETOUR_FACTOR} at {STRAIGHT_LINE_SPEED_KMH:.0f} km/h "
             "(no road network)")

    def matrix(self, points: list[tuple[float, float]]) -> Matrix:
        _check_count(points)
        lon = np.array([p[0] for p in points], dtype=np.float64)
        lat = np.array([p[1] for p in points], dtype=np.float64)
        meters = haversine_m(lon[:, None], lat[:, None], lon[None, :], lat[None, :])
        return Matrix(meters * DETOUR_FACTOR / (STRAIGHT_LINE_SPEED_KMH / 3.6), self.basis)


class RoadMatrix:
    """Travel times on a `RoadGraph`; build once per graph (the index takes ~0.1 s per 10k)."""

    def __init__(self, graph: RoadGraph):
        import shapely

        self.graph = graph
        self.basis = graph.basis
        self._lat0 = float(np.mean(graph.lat))
        x, y = equirectangular(graph.lon, graph.lat, self._lat0)
        self._x, self._y = x, y
        a, b = graph.seg_a, graph.seg_b
        coords = np.stack([np.stack([x[a], y[a]], axis=1), np.stack([x[b], y[b]], axis=1)],
                          axis=1)
        self._lines = shapely.linestrings(coords)
        self._tree = shapely.STRtree(self._lines)
        self._csr = adjacency(graph.node_count, a, b, graph.seg_s, graph.seg_fwd,
                              graph.seg_back)
        self._rcsr = None  # the reversed graph, for trees to a target (`leg`)
        self._trees: dict = {}  # target → (seconds from every node, its snap), LRU order

    def with_seconds(self, seg_s: np.ndarray, basis: str) -> RoadMatrix:
        """The same roads with other segment travel times (learned speeds, speeds.py): the
        spatial index is shared, only the routing matrix is built again."""
        import copy
        from dataclasses import replace

        other = copy.copy(self)
        g = replace(self.graph, seg_s=seg_s)
        other.graph, other.basis = g, basis
        other._csr = adjacency(g.node_count, g.seg_a, g.seg_b, seg_s, g.seg_fwd, g.seg_back)
        other._rcsr, other._trees = None, {}
        return other

    def nearest(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment index, metres off it) of each point; never raises (a far point is simply
        far: the caller decides what is near enough)."""
        import shapely

        x, y = equirectangular(lon, lat, self._lat0)
        pts = shapely.points(np.stack([x, y], axis=1))
        (pt_idx, seg_idx), dist = self._tree.query_nearest(pts, return_distance=True,
                                                           all_matches=False)
        segment = np.full(len(lon), -1, dtype=np.int64)
        offroad = np.full(len(lon), np.inf)
        segment[pt_idx] = seg_idx
        offroad[pt_idx] = dist
        return segment, offroad

    def distance_to(self, segments: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Metres from each point to the given segment (one segment per point)."""
        import shapely

        x, y = equirectangular(lon, lat, self._lat0)
        return shapely.distance(self._lines[segments], shapely.points(np.stack([x, y], axis=1)))

    def snap(self, points: list[tuple[float, float]]) -> Snapped:
        """Nearest drivable segment of each (lon, lat); `SnapError` for one too far away."""
        import shapely

        lon = np.array([p[0] for p in points], dtype=np.float64)
        lat = np.array([p[1] for p in points], dtype=np.float64)
        bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
        if bad.any():
            i = int(np.argmax(bad))
            raise SnapError(i, float(lon[i]), float(lat[i]), math.inf)
        x, y = equirectangular(lon, lat, self._lat0)
        pts = shapely.points(np.stack([x, y], axis=1))
        (pt_idx, seg_idx), dist = self._tree.query_nearest(pts, return_distance=True,
                                                           all_matches=False)
        segment = np.full(len(points), -1, dtype=np.int64)
        offroad = np.full(len(points), np.inf)
        segment[pt_idx] = seg_idx
        offroad[pt_idx] = dist
        far = ~(offroad <= MAX_SNAP_M)
        if far.any():
            i = int(np.argmax(far))
            raise SnapError(i, float(lon[i]), float(lat[i]), float(offroad[i]))
        fraction = shapely.line_locate_point(self._lines[segment], pts, normalized=True)
        return Snapped(segment, np.nan_to_num(fraction, nan=0.0), offroad)

    def _ends(self, snapped: Snapped):
        """How each snapped point is left and reached: (exit nodes, exit costs, entry nodes,
        entry costs), each (n, 2), costs in seconds including the access from off the road."""
        g = self.graph
        seg, f = snapped.segment, snapped.fraction
        t = g.seg_s[seg]
        access = snapped.offroad_m / (ACCESS_SPEED_KMH / 3.6)
        fwd, back = g.seg_fwd[seg], g.seg_back[seg]
        a, b = g.seg_a[seg].astype(np.int64), g.seg_b[seg].astype(np.int64)
        inf = np.inf
        # A point on a segment's end is at that node: it may leave or be reached by the node's
        # other roads whatever the segment's direction.
        at_a = f * g.seg_m[seg] <= AT_NODE_M
        at_b = (1 - f) * g.seg_m[seg] <= AT_NODE_M
        # Leaving point i: to b along the segment if forward allowed, to a if backward.
        exit_node = np.stack([b, a], axis=1)
        exit_cost = np.stack([np.where(fwd | at_b, (1 - f) * t, inf),
                              np.where(back | at_a, f * t, inf)], axis=1) + access[:, None]
        # Arriving at point j: from a if forward allowed, from b if backward.
        entry_node = np.stack([a, b], axis=1)
        entry_cost = np.stack([np.where(fwd | at_a, f * t, inf),
                               np.where(back | at_b, (1 - f) * t, inf)], axis=1) + access[:, None]
        return exit_node, exit_cost, entry_node, entry_cost

    def _direct(self, snapped_from: Snapped, snapped_to: Snapped) -> np.ndarray:
        """Seconds between points on one segment, the second ahead in a drivable direction
        (driven straight along it); inf elsewhere. (n_from, n_to)."""
        g = self.graph
        s1, s2 = snapped_from.segment, snapped_to.segment
        f1, f2 = snapped_from.fraction, snapped_to.fraction
        fwd, back, t = g.seg_fwd[s1], g.seg_back[s1], g.seg_s[s1]
        acc1 = snapped_from.offroad_m / (ACCESS_SPEED_KMH / 3.6)
        acc2 = snapped_to.offroad_m / (ACCESS_SPEED_KMH / 3.6)
        inf = np.inf
        same = s1[:, None] == s2[None, :]
        ahead = np.where(fwd[:, None] & (f2[None, :] >= f1[:, None]), f2[None, :] - f1[:, None],
                         inf)
        behind = np.where(back[:, None] & (f2[None, :] <= f1[:, None]),
                          f1[:, None] - f2[None, :], inf)
        direct = np.minimum(ahead, behind) * t[:, None] + acc1[:, None] + acc2[None, :]
        return np.where(same, direct, inf)

    def matrix(self, points: list[tuple[float, float]]) -> Matrix:
        from scipy.sparse.csgraph import dijkstra

        _check_count(points)
        g = self.graph
        snapped = self.snap(points)
        exit_node, exit_cost, entry_node, entry_cost = self._ends(snapped)
        inf = np.inf
        sources, inverse = np.unique(exit_node.ravel(), return_inverse=True)
        inverse = inverse.reshape(exit_node.shape)
        targets = np.unique(entry_node.ravel())
        target_pos = np.searchsorted(targets, entry_node)
        between = np.empty((len(sources), len(targets)))
        rows_at_once = max(1, DIJKSTRA_ROW_BYTES // (8 * g.node_count))
        for start in range(0, len(sources), rows_at_once):
            chunk = sources[start:start + rows_at_once]
            between[start:start + len(chunk)] = dijkstra(
                self._csr, directed=True, indices=chunk)[:, targets]
        n = len(points)
        out = np.full((n, n), inf)
        for e in range(2):
            for k in range(2):
                cand = (exit_cost[:, e][:, None]
                        + between[inverse[:, e]][:, target_pos[:, k]]
                        + entry_cost[:, k][None, :])
                np.minimum(out, cand, out=out)
        # Two points on one segment, the second ahead in a drivable direction: drive straight.
        np.minimum(out, self._direct(snapped, snapped), out=out)
        np.fill_diagonal(out, 0.0)
        return Matrix(out, self.basis)

    def _tree_to(self, target: tuple[float, float]):
        """Seconds from every node to `target` (lon, lat) — one reverse Dijkstra from its two
        entry nodes — and its snap; kept per target (`TREE_CACHE_BYTES`, oldest dropped)."""
        from scipy.sparse.csgraph import dijkstra

        key = (float(target[0]), float(target[1]))
        hit = self._trees.pop(key, None)
        if hit is not None:
            self._trees[key] = hit  # most recently used last
            return hit
        snapped = self.snap([target])
        _, _, entry_node, entry_cost = self._ends(snapped)
        if self._rcsr is None:
            self._rcsr = self._csr.T.tocsr()
        d = dijkstra(self._rcsr, directed=True, indices=entry_node[0])
        tree = np.minimum(d[0] + entry_cost[0, 0], d[1] + entry_cost[0, 1])
        hit = (tree, snapped)
        self._trees[key] = hit
        while len(self._trees) * 8 * self.graph.node_count > TREE_CACHE_BYTES:
            self._trees.pop(next(iter(self._trees)))
        return hit

    def leg(self, origin: tuple[float, float], target: tuple[float, float]) -> float:
        """Seconds from `origin` to `target` (lon, lat), as `matrix([origin, target])[0, 1]`
        answers, but from a shortest-path tree to the target kept between calls: a live ETA
        asks for the leg to the same next stop from a new position every few seconds, and
        then pays a snap and a lookup instead of a Dijkstra over the graph. The origin is
        snapped with scalar calls (numpy's per-call overhead on one point was most of it)."""
        import shapely

        tree, target_snap = self._tree_to(target)
        lon, lat = float(origin[0]), float(origin[1])
        if not (math.isfinite(lon) and math.isfinite(lat) and abs(lat) <= 90
                and abs(lon) <= 180):
            raise SnapError(0, lon, lat, math.inf)
        k = math.radians(1.0) * EARTH_RADIUS_M
        p = shapely.Point(lon * k * math.cos(math.radians(self._lat0)), lat * k)
        seg = int(self._tree.nearest(p))
        line = self._lines[seg]
        off = float(line.distance(p))
        if not off <= MAX_SNAP_M:
            raise SnapError(0, lon, lat, off)
        f = float(line.line_locate_point(p, normalized=True))
        f = 0.0 if math.isnan(f) else f
        g = self.graph
        t, m = float(g.seg_s[seg]), float(g.seg_m[seg])
        fwd, back = bool(g.seg_fwd[seg]), bool(g.seg_back[seg])
        access = off / (ACCESS_SPEED_KMH / 3.6)
        best = math.inf
        if fwd or (1 - f) * m <= AT_NODE_M:  # leave by b
            best = min(best, (1 - f) * t + access + float(tree[g.seg_b[seg]]))
        if back or f * m <= AT_NODE_M:  # leave by a
            best = min(best, f * t + access + float(tree[g.seg_a[seg]]))
        if int(target_snap.segment[0]) == seg:  # both on one segment: straight along it
            f2 = float(target_snap.fraction[0])
            acc2 = float(target_snap.offroad_m[0]) / (ACCESS_SPEED_KMH / 3.6)
            if fwd and f2 >= f:
                best = min(best, (f2 - f) * t + access + acc2)
            if back and f2 <= f:
                best = min(best, (f - f2) * t + access + acc2)
        return best


def _check_count(points) -> None:
    if len(points) > MAX_MATRIX_POINTS:
        raise ValueError(f"{len(points)} points: at most {MAX_MATRIX_POINTS} per matrix")
