"""pyproject.toml and requirements/*.lock agree (hil/lock.py; regenerate with `make lock`):
every dependency, and nothing else, is a direct pin of the locks, at a version its specifier
allows, with hashes; the runtime lock pins what the test lock pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
TEST_LOCK = REPO / "requirements" / "test.lock"
RUNTIME_LOCK = REPO / "requirements" / "runtime.lock"
BUILD_IN = REPO / "requirements" / "build.in"
FIX = "pyproject.toml and requirements/*.lock disagree: run `make lock` and commit the locks"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def parse_lock(path: Path) -> dict[str, dict]:
    """{name: {"version", "hashes", "via"}} of a uv/pip-compile lock file."""
    entries: dict[str, dict] = {}
    current = None
    for line in path.read_text().splitlines():
        if m := PIN.match(line):
            current = entries[canonicalize_name(m[1])] = {"version": m[2], "hashes": 0,
                                                           "via": set()}
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"] += 1
        elif current is not None and line.strip().startswith("# via"):
            rest = line.strip()[len("# via"):].strip()
            if rest:
                current["via"].add(rest)
        elif current is not None and line.startswith("    #   "):
            current["via"].add(line.strip()[1:].strip())
    return entries


def _requirements(texts: list[str]) -> list[Requirement]:
    return [Requirement(t) for t in texts]


def _project() -> tuple[list[Requirement], list[Requirement], list[Requirement]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    build = [line.split("#")[0].strip() for line in BUILD_IN.read_text().splitlines()]
    return (_requirements(data["project"]["dependencies"]),
            _requirements(data["project"]["optional-dependencies"]["test"]
                          + data["project"]["optional-dependencies"]["planning"]
                          + data["project"]["optional-dependencies"]["reports"]),
            _requirements([b for b in build if b]))


def _direct(lock: dict[str, dict]) -> set[str]:
    return {name for name, e in lock.items()
            if e["via"] & {"fleet-agent (pyproject.toml)", "-r requirements/build.in"}}


def _check(lock: dict[str, dict], wanted: list[Requirement], what: str) -> None:
    direct = _direct(lock)
    names = {canonicalize_name(r.name) for r in wanted}
    assert direct == names, f"{what}: only in the lock {sorted(direct - names)}, only in " \
                            f"pyproject.toml {sorted(names - direct)}. {FIX}"
    for r in wanted:
        version = lock[canonicalize_name(r.name)]["version"]
        assert r.specifier.contains(version, prereleases=True), \
            f"{what}: {r.name}=={version} is outside {r}. {FIX}"
    unhashed = [name for name, e in lock.items() if not e["hashes"]]
    assert unhashed == [], f"{what}: pinned without hashes: {unhashed}. {FIX}"


def test_the_test_lock_pins_the_dependencies_the_test_extra_and_the_build_backend():
    deps, test, build = _project()
    _check(parse_lock(TEST_LOCK), deps + test + build, "requirements/test.lock")


def test_the_runtime_lock_pins_the_dependencies_at_the_test_locks_versions():
    deps, _, build = _project()
    runtime, test = parse_lock(RUNTIME_LOCK), parse_lock(TEST_LOCK)
    _check(runtime, deps + build, "requirements/runtime.lock")
    differ = {n: (e["version"], test.get(n, {}).get("version")) for n, e in runtime.items()
              if test.get(n, {}).get("version") != e["version"]}
    assert differ == {}, f"runtime and test locks pin differently: {differ}. {FIX}"


def test_the_build_backend_satisfies_pyprojects_build_system():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    pinned = parse_lock(RUNTIME_LOCK)
    for text in data["build-system"]["requires"]:
        r = Requirement(text)
        assert r.specifier.contains(pinned[canonicalize_name(r.name)]["version"]), FIX


def test_the_check_notices_a_dependency_added_without_relocking():
    """The checks above against a pyproject.toml that gained a dependency and raised a floor:
    both are reported (so a stale lock cannot pass)."""
    deps, test, build = _project()
    lock = parse_lock(TEST_LOCK)
    added = deps + [Requirement("left-pad>=1.0")]
    try:
        _check(lock, added + test + build, "lock")
    except AssertionError as exc:
        assert "left-pad" in str(exc) and "make lock" in str(exc)
    else:
        raise AssertionError("a dependency missing from the lock passed")
    pinned = lock["aiohttp"]["version"]
    raised = [Requirement(f"aiohttp>{pinned}") if r.name == "aiohttp" else r for r in deps]
    try:
        _check(lock, raised + test + build, "lock")
    except AssertionError as exc:
        assert "outside" in str(exc)
    else:
        raise AssertionError("a floor above the pinned version passed")
