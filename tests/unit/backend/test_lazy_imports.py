"""What a backend process does not load until it is needed: the MCP SDK (with pydantic and
starlette) until the first /mcp request, and no Argon2id hash until the first password check;
a command that needs neither HTTP nor geometry (`vehicles add`, which migrates, and the
parser of every command) without aiohttp, numpy, shapely or Pillow; a backend's start without
numpy (the planner's and live ETAs' matrices), shapely (geofences), Pillow (proof-of-delivery
images), cantools (CAN units) or PyYAML (the spec) until a request or a live route needs
them. Each import costs every backend start and command (seconds in the emulated VM of
tests/system/test_deb_vm.py), so a module that starts importing them at the top fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_PROBE = """
import sys, time
from aiohttp import web
import backend.auth.passwords as passwords
from backend.alerts.rules import RuleSet
from backend.config import BackendConfig
from backend.mcp.http import add_mcp_routes
from backend.mcp.tools import FleetTools
import backend.service, backend.web, backend.cli

app = web.Application()
store = type("Store", (), {"add_command": None})()
lazy = add_mcp_routes(app, FleetTools(store, RuleSet(), BackendConfig().maintenance_config()))
print("sdk", sorted(m for m in ("mcp", "pydantic", "starlette") if m in sys.modules))
print("started", lazy.started)
print("dummy made", passwords._dummy.cache_info().currsize)
assert not passwords.verify_password(None, "x")
print("dummy made after a check", passwords._dummy.cache_info().currsize)
"""


def test_a_backend_loads_the_mcp_sdk_and_hashes_only_when_asked():
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [
        "sdk []", "started False", "dummy made 0", "dummy made after a check 1"]


_COMMAND_PROBE = """
import sys, tempfile
from backend.cli import main

HEAVY = ("aiohttp", "numpy", "shapely", "PIL")
with tempfile.TemporaryDirectory() as d:
    assert main(["--db", f"sqlite://{d}/fleet.db", "vehicles", "add", "v1"]) == 0  # migrates
print("command", sorted(m for m in HEAVY if m in sys.modules))
import backend.service, backend.web
from backend.dispatch.eta_service import EtaService
EtaService(None)  # what a start makes: live ETAs load their matrices at the first route
print("serve", sorted(m for m in ("numpy", "shapely", "PIL", "cantools", "yaml")
                      if m in sys.modules))
"""


def test_a_command_loads_neither_http_nor_geometry_and_a_start_no_shapes_or_images():
    out = subprocess.run([sys.executable, "-c", _COMMAND_PROBE], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-2:] == ["command []", "serve []"]
