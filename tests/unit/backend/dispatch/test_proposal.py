"""Proposals: diffs against the state they were computed on; stale approvals are refused."""

from __future__ import annotations

from backend.dispatch.model import JobState
from backend.dispatch.proposal import (
    Approved,
    Proposal,
    Snapshot,
    Stale,
    StopChange,
    decide,
    diff,
)

A = JobState.ASSIGNED
BASE = Snapshot(7, {"v1": ("a", "b", "c"), "v2": ("d",)},
                {"a": JobState.ARRIVED, "b": A, "c": A, "d": A, "e": JobState.UNASSIGNED})
PROPOSED = {"v1": ("a", "c"), "v2": ("b", "d", "e")}


def test_diff_names_every_kind_of_change():
    d = diff({"v1": ("a", "b", "c"), "v2": ("d",)},
             {"v1": ("c", "a"), "v3": ("b",), "v2": ("x",)})
    kinds = {c.job_id: c.kind for c in d.changes}
    assert kinds == {"a": "resequenced", "b": "moved", "c": "resequenced", "d": "removed",
                     "x": "added"}
    assert StopChange("b", "moved", "v1", "v3", 1, 0) in d.changes
    assert d.routes_after == {"v1": ("c", "a"), "v2": ("x",), "v3": ("b",)}
    assert diff({"v1": ("a",)}, {"v1": ("a",), "v2": ()}).empty


def test_started_stops_are_what_a_replan_keeps():
    assert BASE.started() == {"v1": ("a",), "v2": ()}


def test_approval_on_the_same_version_applies_the_proposal():
    p = Proposal.of("p1", BASE, PROPOSED, now_ms=1000)
    assert p.based_on_version == 7
    assert [c.job_id for c in p.diff.changes] == ["b", "e"]
    result = decide(p, BASE)
    assert isinstance(result, Approved)
    assert result.routes == PROPOSED


def test_a_stale_approval_is_refused_with_the_new_diff():
    p = Proposal.of("p1", BASE, PROPOSED, now_ms=1000)
    # meanwhile: stop c completed on v1 and job f was added to v2 by hand
    now = Snapshot(9, {"v1": ("a", "b", "c"), "v2": ("d", "f")},
                   {**BASE.job_states, "c": JobState.COMPLETED, "f": A})
    result = decide(p, now, base=BASE)
    assert isinstance(result, Stale)
    assert (result.based_on_version, result.current_version) == (7, 9)
    # applying now would also drop f from v2: the new diff says so, the old one did not
    assert StopChange("f", "removed", from_vehicle="v2", from_position=1) in result.diff.changes
    assert "f" not in {c.job_id for c in p.diff.changes}
    assert "job c assigned → completed" in result.since
    assert "job f added" in result.since
    assert "version 7 → 9" in result.message
