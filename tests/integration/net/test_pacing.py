"""Live pacing (docs/link.md): once the backlog is sent, at most one batch per
`[server] send_interval_ms`; backlogs and handovers are never held back."""

from __future__ import annotations

import asyncio

from tests.integration.net.rig import AgentRig, until


async def _agent(gw, tmp_path, name: str, interval_ms: int) -> AgentRig:
    token = await gw.provision(name)
    return AgentRig(tmp_path / name, name, token, gw.host, gw.port, gw.pki["ca"],
                    send_interval_ms=interval_ms)


async def test_live_readings_go_once_per_interval_and_all_arrive(gw, tmp_path):
    batches = {}
    for interval in (0, 500):
        agent = (await _agent(gw, tmp_path, f"pace-{interval}", interval)).start()
        try:
            await until(lambda a=agent: a.uplink.stats.state == "connected", 10, "connect")
            await agent.stream(hz=10, seconds=3)  # one journal commit per reading
            await until(lambda a=agent: a.uplink.stats.readings_acked == 30, 10, "all acked")
            batches[interval] = agent.uplink.stats.batches_sent
            assert await gw.seqs(f"pace-{interval}") == list(range(1, 31))
        finally:
            await agent.stop()
    # unpaced: about a batch per reading; paced at 500 ms over 3 s: at most 1 + 6 (+1 slack)
    assert batches[0] >= 15, batches
    assert batches[500] <= 8, batches


async def test_backlog_is_not_paced(gw, tmp_path):
    agent = await _agent(gw, tmp_path, "backlog", 60_000)
    await agent.add(3000, rich=True)
    agent.start()
    try:
        # paced, only one batch (≤ 1000 readings) could go within the minute
        await until(lambda: agent.uplink.stats.readings_acked == 3000, 20, "backlog drained")
        assert agent.uplink.stats.batches_sent >= 3
    finally:
        await agent.stop()


async def test_a_handover_sends_what_waits_at_once(gw, tmp_path):
    agent = (await _agent(gw, tmp_path, "mover", 60_000)).start()
    try:
        await until(lambda: agent.uplink.stats.state == "connected", 10, "connect")
        await agent.add(1)
        await until(lambda: agent.uplink.stats.readings_acked == 1, 10, "first reading")
        await agent.add(1)
        await asyncio.sleep(1.0)
        assert agent.uplink.stats.readings_sent == 1, "the second reading waits for its interval"
        await agent.uplink.migrate("127.0.0.2")
        await until(lambda: agent.uplink.stats.readings_acked == 2, 10, "sent after the handover")
        assert agent.uplink.link.handshakes == 1
    finally:
        await agent.stop()
