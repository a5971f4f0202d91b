"""`make lock`: pin every Python dependency, with hashes, for the interpreter and machines the
project ships to (Debian 12's Python 3.11 on x86_64 and aarch64).

    requirements/test.lock     pyproject.toml's dependencies + the `test`, `planning` and
                               `reports` extras + the build backend: what `make` (and CI) installs
    requirements/runtime.lock  the dependencies + the build backend, at the same versions:
                               what the fleet-backend package's virtualenv gets (debian/rules)
    requirements/agent.lock    requirements/agent.in (the agent's share of the dependencies) +
                               the build backend, at the same versions: what the fleet-agent
                               package's virtualenv gets (debian/rules, hil/chroot.py)

uv resolves (`uv pip compile --generate-hashes`): each lock is resolved once per platform
(`--python-platform x86_64-manylinux_2_36` and `aarch64-manylinux_2_36`, glibc 2.36 being
Debian 12's) and written only when both resolutions are the same, so one file serves both
machines; the hashes cover every file of each pinned release, so pip on either machine finds
its wheel's hash. The runtime lock is also resolved wheels-only: the arm64 package installs
from wheels and never compiles. uv rather than pip-compile: pip-compile resolves only for the
machine it runs on and would need an aarch64 interpreter to check the other; uv resolves for
any target platform from here, in seconds.

tests/integration/test_lock.py fails when pyproject.toml and the locks disagree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK_DIR = REPO / "requirements"
TEST_LOCK = LOCK_DIR / "test.lock"
RUNTIME_LOCK = LOCK_DIR / "runtime.lock"
AGENT_LOCK = LOCK_DIR / "agent.lock"
AGENT_IN = LOCK_DIR / "agent.in"
# the build backend (pyproject's [build-system]): installed from the lock, so the project
# itself is built without build isolation (which would fetch it unpinned)
BUILD_IN = LOCK_DIR / "build.in"
PYTHON_VERSION = "3.11"
PLATFORMS = ("x86_64-manylinux_2_36", "aarch64-manylinux_2_36")
COMMAND = "make lock"


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not installed: `make .venv/.pip-installed` (the test extra)")
    return uv


def compile_lock(out: Path, extras: list[str], extra_args: list[str],
                 source: str = "pyproject.toml") -> str:
    """The lock text of `source` (+ the build backend) for every platform in PLATFORMS;
    SystemExit if they differ."""
    texts = []
    for platform in PLATFORMS:
        cmd = [_uv(), "pip", "compile", source,
               str(BUILD_IN.relative_to(REPO)), *(f"--extra={e}" for e in extras),
               "--python-version", PYTHON_VERSION, "--python-platform", platform,
               "--generate-hashes", "--custom-compile-command", COMMAND, *extra_args]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"uv pip compile for {platform} failed:\n{done.stderr}")
        texts.append(done.stdout)
    if len(set(texts)) != 1:
        raise SystemExit(f"{out.name}: x86_64 and aarch64 resolve differently; a dependency "
                         "is platform-specific and needs a lock per platform")
    return texts[0]


def main() -> int:
    test = compile_lock(TEST_LOCK, ["test", "planning", "reports"], [])
    TEST_LOCK.write_text(test)
    runtime = compile_lock(RUNTIME_LOCK, [], [
        "--only-binary", ":all:", "--constraint", str(TEST_LOCK.relative_to(REPO))])
    RUNTIME_LOCK.write_text(runtime)
    agent = compile_lock(AGENT_LOCK, [], [
        "--only-binary", ":all:", "--constraint", str(TEST_LOCK.relative_to(REPO))],
        source=str(AGENT_IN.relative_to(REPO)))
    AGENT_LOCK.write_text(agent)
    for lock in (TEST_LOCK, RUNTIME_LOCK, AGENT_LOCK):
        pins = [line for line in lock.read_text().splitlines()
                if line and not line[0].isspace() and not line.startswith("#")]
        print(f"{lock.relative_to(REPO)}: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
