"""pyproject.toml and requirements/*.lock agree (hil/lock.py; regenerate with `make lock`):
every dependency, and nothing else, is a direct pin of the locks, at a version its specifier
allows, with hashes; the runtime and agent locks pin what the test lock pins; the agent's
lock (the fleet-agent package) holds everything agent/ and geostream/ import."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
TEST_LOCK = REPO / "requirements" / "test.lock"
RUNTIME_LOCK = REPO / "requirements" / "runtime.lock"
BUILD_IN = REPO / "requirements" / "build.in"
AGENT_LOCK = REPO / "requirements" / "agent.lock"
AGENT_IN = REPO / "requirements" / "agent.in"
# what the vehicle's code is: the fleet-agent package's virtualenv must import all of it
AGENT_PACKAGES = ("agent", "geostream")
# imports the agent package takes from Debian, not from its lock (debian/rules links them)
FROM_DEBIAN = {"systemd"}
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
            if e["via"] & {"fleet-agent (pyproject.toml)", "-r requirements/build.in",
                           "-r requirements/agent.in"}}


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


def _agent_in() -> list[str]:
    return [line.split("#")[0].strip() for line in AGENT_IN.read_text().splitlines()
            if line.split("#")[0].strip()]


def test_the_agent_lock_pins_the_agents_dependencies_at_the_test_locks_versions():
    deps, _, build = _project()
    by_name = {canonicalize_name(r.name): r for r in deps}
    named = [canonicalize_name(n) for n in _agent_in()]
    assert set(named) <= set(by_name), \
        f"requirements/agent.in names what pyproject.toml does not: {set(named) - set(by_name)}"
    agent, test = parse_lock(AGENT_LOCK), parse_lock(TEST_LOCK)
    _check(agent, [by_name[n] for n in named] + build, "requirements/agent.lock")
    differ = {n: (e["version"], test.get(n, {}).get("version")) for n, e in agent.items()
              if test.get(n, {}).get("version") != e["version"]}
    assert differ == {}, f"agent and test locks pin differently: {differ}. {FIX}"


def _third_party_imports(package: str) -> set[str]:
    """Top-level names of the non-standard-library modules the files of `package` import."""
    names: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names}


def test_the_agent_lock_holds_everything_the_agent_imports():
    """The fleet-agent package installs only requirements/agent.lock: every distribution that
    provides a module agent/ or geostream/ imports must be pinned there (else the vehicle's
    daemon fails at its first import of it, on the vehicle)."""
    ours = {"agent", "geostream", "backend", "hil", "loadtest", "tests", "bench"}
    wanted = set().union(*(_third_party_imports(p) for p in AGENT_PACKAGES)) - ours - FROM_DEBIAN
    providers = importlib.metadata.packages_distributions()
    pinned = set(parse_lock(AGENT_LOCK))
    missing = {}
    for module in sorted(wanted):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"no installed distribution provides {module!r} (imported by the agent)"
        if not dists & pinned:
            missing[module] = sorted(dists)
    assert missing == {}, f"the agent imports these but requirements/agent.lock lacks them " \
                          f"(add to requirements/agent.in, `make lock`): {missing}"
    # aiohttp is the agent's own since the in-cab tablet's server (agent/cab/server.py; its
    # wheels add 3.1 MB to download and 12.5 MB installed on arm64); numpy stays the backend's
    assert "numpy" not in pinned and "shapely" not in pinned, "the backend's libraries leaked"


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
