"""Exhaustive search for tiny plans (≤ `EXACT_MAX_JOBS` stops), run after VROOM as a check.

Why hand-written next to a real solver: on 400 random instances of ≤ 8 stops with windows,
skills and capacities, VROOM (exploration 5, eight starts) still left a servable job out or
came out > 1 % above the optimum in 2 (docs/benchmarks.md). A depth-first search with bounds
settles such instances exactly in milliseconds; the planner keeps whichever plan is better.
The search gives up (returns None) past `EXACT_MAX_NODES`, so it never costs more than that.

Objective, as VROOM's: most priority served, then most jobs, then least driving time.
Semantics, as the model's: service starts inside a window (waiting allowed), the vehicle is
back at its end by the end of its shift, demand within capacity, job skills ⊆ vehicle skills.
"""

from __future__ import annotations

from dataclasses import dataclass

# The "small instance": up to 8 stops.
EXACT_MAX_JOBS = 8
# Search nodes before giving up: ~0.5 s of Python on this machine, the worst case.
EXACT_MAX_NODES = 200_000


@dataclass(frozen=True)
class ExactVehicle:
    start: int  # matrix index
    end: int
    ready_s: int  # when it can leave `start`
    end_s: int  # back at `end` by then
    capacity: tuple[int, ...]
    skills: frozenset[int]


@dataclass(frozen=True)
class ExactJob:
    loc: int
    windows: tuple[tuple[int, int], ...]  # () = any time
    service_s: int
    demand: tuple[int, ...]
    skills: frozenset[int]
    priority: int


class _Budget(Exception):
    pass


def exact_orders(vehicles: list[ExactVehicle], jobs: list[ExactJob], durations,
                 max_nodes: int = EXACT_MAX_NODES):
    """Best job order per vehicle (lists of job indices) and its key, or None if too large."""
    if len(jobs) > EXACT_MAX_JOBS:
        return None
    d = durations
    best = {"key": None, "routes": None}
    nodes = [0]
    routes: list[list[int]] = [[] for _ in vehicles]

    def search(vi, loc, t, load, prio, count, cost, left):
        nodes[0] += 1
        if nodes[0] > max_nodes:
            raise _Budget
        v = vehicles[vi]
        # bound: even serving every remaining job cannot beat the best
        if best["key"] is not None:
            pot = (prio + sum(jobs[k].priority for k in left), count + len(left))
            if pot < best["key"][:2] or (pot == best["key"][:2] and -cost <= best["key"][2]):
                return
        # close this route (an empty one: the vehicle stays unused)
        back = d[loc, v.end] if routes[vi] else 0
        closed = cost + back
        nxt = vi + 1
        if not routes[vi]:  # identical vehicles after an unused one stay unused too
            while nxt < len(vehicles) and vehicles[nxt] == v:
                nxt += 1
        if nxt == len(vehicles):
            _finish(prio, count, closed)
        else:
            w = vehicles[nxt]
            search(nxt, w.start, w.ready_s, (0,) * len(w.capacity), prio, count, closed, left)
        # or extend it by one job
        for k in sorted(left):
            j = jobs[k]
            if not j.skills <= v.skills:
                continue
            new_load = tuple(a + b for a, b in zip(load, j.demand, strict=True))
            if any(a > c for a, c in zip(new_load, v.capacity, strict=True)):
                continue
            arrive = t + d[loc, j.loc]
            begin = arrive
            if j.windows:
                fit = [w for w in j.windows if w[1] >= arrive]
                if not fit:
                    continue
                begin = max(arrive, fit[0][0])
            done = begin + j.service_s
            if done + d[j.loc, v.end] > v.end_s:
                continue
            routes[vi].append(k)
            search(vi, j.loc, done, new_load, prio + j.priority, count + 1,
                   cost + d[loc, j.loc], left - {k})
            routes[vi].pop()

    def _finish(prio, count, cost):
        key = (prio, count, -cost)
        if best["key"] is None or key > best["key"]:
            best["key"] = key
            best["routes"] = [list(r) for r in routes]

    first = vehicles[0]
    try:
        search(0, first.start, first.ready_s, (0,) * len(first.capacity), 0, 0, 0,
               frozenset(range(len(jobs))))
    except _Budget:
        return None
    return best["routes"], best["key"]
