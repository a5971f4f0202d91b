"""systemd units and the Debian package, checked with the real tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.system.debcheck import (
    AGENT_INSTALLED_MAX_KB,
    agent_package_problems,
    control_of,
    listing_of,
)

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "systemd").glob("*.service"))
# systemd-analyze security: 0 = fully locked down, 10 = exposed; issue 16 asks ≤ 1.5 for both
# units (the rest is network access, AF_CAN and the serial devices the agent exists to use)
MAX_EXPOSURE = 1.5


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} missing: `make test` installs it"
    return path


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies(unit):
    out = subprocess.run([_need("systemd-analyze"), "verify", str(unit)],
                         capture_output=True, text=True)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                # the venvs' binaries only exist once the packages are installed
                if line.strip() and "/opt/venvs/fleet-" not in line]
    assert problems == [], problems


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_is_hardened(unit):
    out = subprocess.run([_need("systemd-analyze"), "security", "--offline=true", str(unit)],
                         capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE


def test_agent_unit_speaks_notify_and_watchdog():
    text = (REPO / "systemd" / "fleet-agent.service").read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=always" in text
    assert "StateDirectory=fleet-agent" in text


@pytest.mark.slow
def test_debian_packages_build_with_units_venvs_and_migrations(deb_package):
    agent, backend = deb_package.agent, deb_package.backend  # built once (tests/conftest.py)
    listing = listing_of(agent)
    for path in ("./lib/systemd/system/fleet-agent.service",
                 "./opt/venvs/fleet-agent/bin/fleet-agent", "./etc/fleet-agent/agent.toml",
                 "/site-packages/agent/dbc/truck_j1939.dbc", "/site-packages/geostream/"):
        assert path in listing, f"{path} not in {agent.name}"
    assert agent_package_problems(agent) == []
    control = control_of(agent)
    assert "Package: fleet-agent" in control and "adduser" in control
    # systemd's bindings are Debian's (no compiler in the build, on any architecture)
    assert re.search(r"Depends:.*\bpython3-systemd\b", control), control
    assert re.search(r"site-packages/systemd -> /usr/lib/python3/dist-packages/systemd$",
                     listing, re.M), "the virtualenv does not link python3-systemd"

    listing = listing_of(backend)
    for path in ("./lib/systemd/system/fleet-backend.service",
                 "./opt/venvs/fleet-backend/bin/fleet-backend",
                 "./usr/share/fleet-backend/sql/sqlite/0001_init.sql",
                 "backend/static/app/app.js", "backend/static/app/index.html",
                 "backend/static/app/maplibre-gl-worker.mjs", "backend/openapi.yaml"):
        assert path in listing, f"{path} not in {backend.name}"
    control = control_of(backend)
    assert "Package: fleet-backend" in control
    # an installation of the one package of 0.1.0 (agent and backend) upgrades to the two
    assert re.search(r"^ Replaces: fleet-agent \(<< 0\.2\.0~\)$", control, re.M), control
    assert re.search(r"site-packages/systemd -> /usr/lib/python3/dist-packages/systemd$",
                     listing, re.M), "the backend's virtualenv does not link python3-systemd"


def test_the_size_check_notices_a_heavy_agent_package(tmp_path):
    """agent_package_problems against a package made here with a backend library inside and
    a declared installed size over the ceiling: both reported."""
    tree = tmp_path / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    lib = tree / "opt/venvs/fleet-agent/lib/python3.11/site-packages/shapely"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (tree / "DEBIAN" / "control").write_text(
        "Package: fleet-agent\nVersion: 0.2.0-1\nArchitecture: all\nMaintainer: t <t@t>\n"
        f"Installed-Size: {AGENT_INSTALLED_MAX_KB + 1}\nDescription: t\n")
    deb = tmp_path / "fleet-agent_0.2.0-1_all.deb"
    subprocess.run(["dpkg-deb", "-b", str(tree), str(deb)], check=True, capture_output=True)
    problems = agent_package_problems(deb)
    assert any("installed" in p for p in problems) and any("shapely" in p for p in problems)


def _commented_keys(text: str) -> dict[str, set[str]]:
    """{table: keys} of the `#key = ...` lines under each `#[table]` / `#[[table]]` header."""
    keys: dict[str, set[str]] = {}
    table = ""
    for line in text.splitlines():
        header = re.match(r"^#\[\[?([\w.]+)\]\]?\s*$", line)
        if header:
            table = header.group(1)
            continue
        key = re.match(r"^#(\w+) = ", line)
        if key:
            keys.setdefault(table, set()).add(key.group(1))
    return keys


def test_packaged_agent_toml_lists_every_option_commented():
    import dataclasses
    import tomllib

    from agent.can.config import BUS_KEYS, CAN_KEYS
    from agent.check_config import STATUS_KEYS
    from agent.config import CAB_KEYS, JournalConfig, ServerConfig
    from agent.gps.config import KEYS as GPS_KEYS

    text = (REPO / "debian" / "agent.toml").read_text()
    assert tomllib.loads(text) == {}  # all comments: the unit's ExecCondition skips it
    assert "debian/agent.toml etc/fleet-agent/" in (REPO / "debian" / "fleet-agent.install"
                                                    ).read_text()
    expected = {
        "vehicle": {"id", "token"},
        "server": {f.name for f in dataclasses.fields(ServerConfig)},
        "journal": {f.name for f in dataclasses.fields(JournalConfig)},
        "gps": set(GPS_KEYS),
        "can": CAN_KEYS - {"bus"},
        "can.bus": set(BUS_KEYS),
        "log": {"level"},
        "status": set(STATUS_KEYS),
        "cab": set(CAB_KEYS),
    }
    assert _commented_keys(text) == expected
