"""The sans-IO part of one owner per vehicle (backend/cluster/owners.py): connection changes in
order, repairs that make the store agree with this process's connections, gained and lost."""

from backend.cluster import owners
from backend.cluster.owners import OwnerBook


def test_changes_are_kept_in_order_and_taken_once():
    b = OwnerBook()
    b.connected("v1", 10)
    b.disconnected("v1", 20)
    b.connected("v2", 30)
    assert b.take() == [("v1", True, 10), ("v1", False, 20), ("v2", True, 30)]
    assert b.take() == []


def test_pending_changes_are_bounded_oldest_dropped(monkeypatch):
    monkeypatch.setattr(owners, "MAX_PENDING", 3)
    b = OwnerBook()
    for t in range(5):
        b.connected(f"v{t}", t)
    assert [v for v, _, _ in b.take()] == ["v2", "v3", "v4"]


def test_repairs_claim_what_is_held_and_release_what_is_not():
    b = OwnerBook()
    b.connected("held", 5)  # its connection began at 5
    b.take()
    rows = {"gone": (True, 1), "quiet": (False, 2), "mine": (True, 3)}
    # held but not owned as connected → claimed with its connection's start;
    # owned as connected but not held → released now; the rest agree
    assert b.repairs(rows, {"held", "mine"}, 100) == [("held", True, 5), ("gone", False, 100)]
    assert b.repairs(rows, {"other"}, 100) == [("other", True, 100), ("gone", False, 100),
                                              ("mine", False, 100)]


def test_update_reports_gained_and_lost():
    b = OwnerBook()
    assert b.update({"a": (True, 1), "b": (False, 2)}) == ({"a", "b"}, set())
    assert b.update({"b": (True, 3), "c": (False, 4)}) == ({"c"}, {"a"})
    assert b.owned == {"b": (True, 3), "c": (False, 4)}
