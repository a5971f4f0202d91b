"""`python -m backend serve` without the built web bundle: one clear line, no traceback."""

import subprocess
import sys

from backend import cli, web


def test_serve_without_bundle_says_make_web(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(web, "STATIC", tmp_path / "static")  # a clone before `make web`
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make web" in err[0] and "Traceback" not in err[0], err


def test_bundle_check_passes_when_built():
    # make test builds the bundle before the tests (Makefile: test depends on web)
    assert web.bundle_problem() is None, "run `make web` first"


def test_help_does_not_need_the_bundle():
    out = subprocess.run([sys.executable, "-m", "backend", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "usage" in out.stdout.lower()
