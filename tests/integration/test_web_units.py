"""The web app's pure modules (web/src: fleet, track) under Node's own test runner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"


def test_web_unit_tests_pass():
    node = shutil.which("node")
    assert node, "node missing: `make test` installs Node.js (deps-web)"
    run = subprocess.run([node, "--test", "test/"], cwd=WEB, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout
