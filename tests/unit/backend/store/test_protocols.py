"""The store's Protocols (backend/store/protocols.py) declare every store method the rest of the
backend calls: a scan of the backend's source for calls on a store (`store.x(…)`,
`self.store.x(…)`, `app[STORE].x(…)`) finds none that `Store` lacks. (That both stores satisfy
the Protocols is mypy's part: backend/store/conformance.py in `make lint`.)"""

import ast
from pathlib import Path

from backend.store import protocols

BACKEND = Path(__file__).resolve().parents[4] / "backend"
# their own objects called `store`: the load tester's bookkeeping (not a backend store)
NOT_STORES = ("loadtest",)
STORE_NAMES = ("store", "_store")


def _is_store(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in STORE_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in STORE_NAMES
    return (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name)
            and node.slice.id == "STORE")


def store_calls() -> dict[str, set[str]]:
    """{method: {files calling it}} over backend/, outside backend/store/."""
    calls: dict[str, set[str]] = {}
    for path in BACKEND.rglob("*.py"):
        rel = path.relative_to(BACKEND)
        if rel.parts[0] in ("store", *NOT_STORES):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and _is_store(node.func.value)):
                calls.setdefault(node.func.attr, set()).add(str(rel))
    return calls


def test_every_method_the_backend_calls_is_declared():
    calls = store_calls()
    assert {"write", "authenticate", "add_user", "last_services"} <= calls.keys()  # the scan works
    declared = {n for p in _protocols() for n in dir(p) if not n.startswith("_")}
    assert {m: sorted(f) for m, f in calls.items() if m not in declared} == {}


def _protocols() -> list[type]:
    return [p for p in vars(protocols).values()
            if isinstance(p, type) and getattr(p, "_is_protocol", False)
            and p.__module__ == protocols.__name__]


def test_each_concern_protocol_is_part_of_store():
    """All but the optional capabilities (one store only, probed with hasattr)."""
    optional = {protocols.Replication}
    concerns = [p for p in _protocols() if p is not protocols.Store and p not in optional]
    assert len(concerns) >= 10 and all(p in protocols.Store.__mro__ for p in concerns)


def test_both_stores_hold_the_same_modules():
    """One concern, one module name, in both dialects (a change touches its twin)."""
    sqlite, postgres = ({p.name for p in (BACKEND / "store" / d).glob("*.py")}
                        for d in ("sqlite", "postgres"))
    assert sqlite == postgres and {"db.py", "store.py", "readings.py"} <= sqlite
