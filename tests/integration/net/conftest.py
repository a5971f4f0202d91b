"""Fixtures for the link tests: an in-process gateway on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.net.rig import GatewayRig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pgfixture import pg_server, pg_template, pg_url  # noqa: E402,F401


@pytest.fixture
async def gw(tmp_path, pki):
    rig = await GatewayRig(tmp_path, pki).start()
    yield rig
    await rig.stop()
