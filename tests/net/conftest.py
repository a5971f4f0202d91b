"""Fixtures for the link tests: an in-process gateway on loopback."""

from __future__ import annotations

import pytest

from .rig import GatewayRig


@pytest.fixture
async def gw(tmp_path, pki):
    rig = await GatewayRig(tmp_path, pki).start()
    yield rig
    await rig.stop()
