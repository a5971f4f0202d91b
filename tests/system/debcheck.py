"""What a built fleet-agent .deb must be, on any architecture: small, and nothing of the backend
in it (tests/system/test_packaging.py on amd64, tests/system/test_deb_arm64.py on arm64)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# what a vehicle downloads and installs at most (arm64 and amd64): an update over cellular
# should not pay for a dispatch backend
AGENT_DEB_MAX_BYTES = 15 * 1000 * 1000
AGENT_INSTALLED_MAX_KB = 60 * 1000


def listing_of(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                          check=True).stdout


def control_of(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True,
                          check=True).stdout


def download_size(deb: Path) -> int:
    """The .deb's size as released: its file size when its files are xz-compressed (dpkg-deb's
    default), else with the files recompressed as xz -6 (the suite builds zstd for speed,
    tests/conftest.py), which a vehicle would download."""
    members = subprocess.run(["ar", "t", str(deb)], capture_output=True, text=True,
                             check=True).stdout.split()
    data = next(m for m in members if m.startswith("data.tar"))
    if data == "data.tar.xz":
        return deb.stat().st_size
    packed = subprocess.run(["ar", "p", str(deb), data], capture_output=True, check=True).stdout
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                         check=True).stdout
    xz = subprocess.run(["xz", "-6", "-T2", "-c"], input=tar, capture_output=True,
                        check=True).stdout
    return deb.stat().st_size - len(packed) + len(xz)


def agent_package_problems(deb: Path) -> list[str]:
    """What is wrong with a fleet-agent .deb (any architecture): its size against the
    ceilings, and anything of the backend in it."""
    problems = []
    size = download_size(deb)
    if size > AGENT_DEB_MAX_BYTES:
        problems.append(f"{deb.name}: {size / 1e6:.1f} MB to download")
    installed = int(re.search(r"Installed-Size: (\d+)", control_of(deb))[1])
    if installed > AGENT_INSTALLED_MAX_KB:
        problems.append(f"{deb.name}: {installed / 1000:.1f} MB installed")
    listing = listing_of(deb)
    # (aiohttp is the agent's too since the in-cab tablet's server, agent/cab/server.py)
    for backend_only in ("/site-packages/shapely/", "/site-packages/numpy/",
                         "/site-packages/backend/", "/site-packages/asyncpg/",
                         "fleet-backend.service", "/bin/fleet-backend"):
        if backend_only in listing:
            problems.append(f"{deb.name} carries {backend_only}")
    if "/site-packages/agent/cab_static/driver.js" not in listing:
        problems.append(f"{deb.name} lacks the in-cab tablet's app (agent/cab_static/)")
    return problems
