"""Flow control: a slow database slows the vehicles; gateway memory stays bounded (§6)."""

from __future__ import annotations

import asyncio

from backend.gateway import MIN_CREDIT, credit_for
from tests.integration.net.rig import AgentRig, GatewayRig, until


def test_credit_policy():
    assert credit_for(0, 1) == 4096
    assert credit_for(0, 10) == 2000
    assert credit_for(19_000, 1) == 1000
    assert credit_for(50_000, 3) == MIN_CREDIT  # never 0: a vehicle with nothing in flight
    assert credit_for(1_000, 2, backlog_high=2_000) == 500


async def test_slow_database_slows_vehicles_with_bounded_backlog(tmp_path, pki):
    high, vehicles, per_vehicle = 1500, 3, 2500
    # 0.15 s + 0.1 ms per row per commit: a database far slower than the vehicles' backlogs
    gw = await GatewayRig(tmp_path, pki, slow=(0.15, 0.0001), backlog_high=high,
                          writer_max_rows=500).start()
    agents = []
    try:
        for i in range(vehicles):
            token = await gw.provision(f"slow-{i}")
            a = AgentRig(tmp_path / f"a{i}", f"slow-{i}", token, gw.host, gw.port, gw.pki["ca"])
            await a.add(per_vehicle)
            agents.append(a.start())
        peak, credits = 0, set()

        async def sample():
            nonlocal peak
            while True:
                peak = max(peak, gw.writer.stats.backlog_rows)
                for protos in gw.gateway.connections.values():
                    credits.update(p.session.credit for p in protos)
                await asyncio.sleep(0.01)

        sampler = asyncio.get_running_loop().create_task(sample())
        total = vehicles * per_vehicle
        await until(lambda: gw.writer.stats.rows >= total, 90, "all readings committed")
        sampler.cancel()
        for i, a in enumerate(agents):
            assert await gw.seqs(f"slow-{i}") == list(range(1, per_vehicle + 1))
            await until(lambda a=a: a.uplink.stats.readings_acked >= per_vehicle, 10, "acks")
        # the backlog never grew past the high-water mark plus one minimum credit per vehicle
        # (credits of concurrent acks are computed before the other batches land)
        assert peak <= high + vehicles * max(MIN_CREDIT, high // vehicles), peak
        assert min(credits) < high // vehicles, f"credit was lowered: {sorted(credits)[:5]}"
    finally:
        for a in agents:
            await a.stop()
        await gw.stop()


async def test_large_backlog_batches_stay_within_max_batch_bytes(gw, tmp_path):
    """Big positions drained in bulk: every batch fits the welcome's limit (no too-large)."""
    token = await gw.provision("bulk")
    agent = AgentRig(tmp_path / "a", "bulk", token, gw.host, gw.port, gw.pki["ca"])
    await agent.add(3000, rich=True)
    agent.start()
    try:
        await until(lambda: agent.uplink.stats.readings_acked >= 3000, 30, "drained")
        assert gw.gateway.stats.protocol_errors == 0 and agent.uplink.stats.connects == 1
    finally:
        await agent.stop()
