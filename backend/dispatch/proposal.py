"""A plan as a proposal: a diff against the state it was computed on, approved or refused.

Pure values, no I/O and no clock (`now_ms` is passed). The dispatch state a plan starts from
is a `Snapshot`: its `version` (grows with every change to jobs or routes: a job added, a stop
completed, a route edited), each vehicle's ordered job ids and each job's state. A `Proposal`
remembers the version it was computed on and the routes it wants. `decide(proposal, current)`:

- same version → `Approved` with the routes to write (nothing moved since the plan);
- another version → `Stale`, carrying the diff the proposal would now make against the
  current routes and what changed in between: never applied blindly. The dispatcher re-plans
  (or reads the new diff and asks again with a fresh proposal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.dispatch.model import JobState

Routes = Mapping[str, tuple[str, ...]]  # vehicle id → job ids in visiting order


@dataclass(frozen=True)
class Snapshot:
    """The dispatch state of one fleet at one version (a counter or a digest)."""

    version: int | str
    routes: Routes
    job_states: Mapping[str, JobState] = field(default_factory=dict)

    def started(self) -> dict[str, tuple[str, ...]]:
        """Each vehicle's started stops (en route or arrived), in order: a re-plan keeps them."""
        return {v: tuple(j for j in jobs if self.job_states.get(j, JobState.ASSIGNED).started)
                for v, jobs in self.routes.items()}


@dataclass(frozen=True)
class StopChange:
    """One job's change between two route sets. `kind`: added (was unassigned), removed
    (becomes unassigned), moved (to another vehicle), resequenced (same vehicle, its order
    among the stops that stay there changed)."""

    job_id: str
    kind: str
    from_vehicle: str | None = None
    to_vehicle: str | None = None
    from_position: int | None = None
    to_position: int | None = None


@dataclass(frozen=True)
class Diff:
    changes: tuple[StopChange, ...]
    routes_before: Routes  # of the vehicles whose route changes
    routes_after: Routes

    @property
    def empty(self) -> bool:
        return not self.changes

    def as_json(self) -> dict:
        return {
            "changes": [{k: v for k, v in vars(c).items() if v is not None}
                        for c in self.changes],
            "routes_before": {k: list(v) for k, v in self.routes_before.items()},
            "routes_after": {k: list(v) for k, v in self.routes_after.items()},
        }


def diff(before: Routes, after: Routes) -> Diff:
    """What applying `after` over `before` changes, job by job (vehicles absent = empty)."""
    where_before = {j: (v, i) for v, jobs in before.items() for i, j in enumerate(jobs)}
    where_after = {j: (v, i) for v, jobs in after.items() for i, j in enumerate(jobs)}
    # Order among the jobs a vehicle keeps: a stop that only shifts because another left or
    # joined is not resequenced.
    kept_order, kept_order_after = {}, {}
    for v in before.keys() | after.keys():
        stay = set(before.get(v, ())) & set(after.get(v, ()))
        kept_order[v] = [j for j in before.get(v, ()) if j in stay]
        kept_order_after[v] = [j for j in after.get(v, ()) if j in stay]
    changes = []
    for job in sorted(where_before.keys() | where_after.keys()):
        b, a = where_before.get(job), where_after.get(job)
        if b is None:
            changes.append(StopChange(job, "added", to_vehicle=a[0], to_position=a[1]))
        elif a is None:
            changes.append(StopChange(job, "removed", from_vehicle=b[0], from_position=b[1]))
        elif a[0] != b[0]:
            changes.append(StopChange(job, "moved", b[0], a[0], b[1], a[1]))
        elif kept_order[a[0]].index(job) != kept_order_after[a[0]].index(job):
            changes.append(StopChange(job, "resequenced", b[0], a[0], b[1], a[1]))
    vehicles = sorted(v for v in before.keys() | after.keys()
                      if tuple(before.get(v, ())) != tuple(after.get(v, ())))
    return Diff(tuple(changes), {v: tuple(before.get(v, ())) for v in vehicles},
                {v: tuple(after.get(v, ())) for v in vehicles})


@dataclass(frozen=True)
class Proposal:
    """Routes a planner (or a person, or an AI client) proposes, on top of `based_on`."""

    id: str
    based_on_version: int | str
    routes: Routes
    diff: Diff
    created_ms: int
    basis: str = ""
    unassigned: Mapping[str, str] = field(default_factory=dict)
    by: str = ""

    @classmethod
    def of(cls, proposal_id: str, base: Snapshot, routes: Routes, now_ms: int, **kw) -> Proposal:
        routes = {v: tuple(jobs) for v, jobs in routes.items()}
        return cls(proposal_id, base.version, routes, diff(base.routes, routes), now_ms, **kw)


@dataclass(frozen=True)
class Approved:
    proposal_id: str
    routes: Routes  # what to write: every vehicle's new order
    diff: Diff


@dataclass(frozen=True)
class Stale:
    """Refused: the state moved on. `diff` is what approving would now change; `since` is
    what changed between the proposal's base and the current state."""

    proposal_id: str
    based_on_version: int | str
    current_version: int | str
    diff: Diff
    since: tuple[str, ...]

    @property
    def message(self) -> str:
        return (f"the dispatch state moved on (version {self.based_on_version} → "
                f"{self.current_version}: {'; '.join(self.since) or 'routes changed'}); "
                "re-plan, or review the new diff")


def decide(proposal: Proposal, current: Snapshot, base: Snapshot | None = None) -> Approved | Stale:
    """Approve `proposal` against the `current` state, or refuse it as stale.

    `base` (the snapshot the proposal was computed on, if still known) lets the refusal say
    what happened in between (a stop completed, a job added)."""
    if current.version == proposal.based_on_version:
        return Approved(proposal.id, proposal.routes, diff(current.routes, proposal.routes))
    return Stale(proposal.id, proposal.based_on_version, current.version,
                 diff(current.routes, proposal.routes), _since(base, current))


def _since(base: Snapshot | None, current: Snapshot) -> tuple[str, ...]:
    if base is None:
        return ()
    notes = []
    for job in sorted(base.job_states.keys() | current.job_states.keys()):
        before, now = base.job_states.get(job), current.job_states.get(job)
        if before is None:
            notes.append(f"job {job} added")
        elif now is None:
            notes.append(f"job {job} deleted")
        elif before != now:
            notes.append(f"job {job} {before.value} → {now.value}")
    for change in diff(base.routes, current.routes).changes:
        notes.append(f"job {change.job_id} {change.kind} on the routes")
    return tuple(notes)
