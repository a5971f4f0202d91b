"""Live pacing (docs/link.md): once the backlog is sent, at most one batch per
`[server] send_interval_ms`, and the next live batch waits for the ack of the one in flight
(bounded); backlogs and handovers are never held back."""

from __future__ import annotations

import asyncio

from tests import emuclock
from tests.integration.net.rig import AgentRig, GatewayRig, until


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


# --- a gateway that is behind (docs/benchmarks.md "Past the knee") ---------------------------
# On the emulated clock (tests/emuclock.py): the real agent streams positions at 1 Hz to the
# real gateway, whose store commits take `commit_s` (rig.py `SlowStore`: a clock, not a mock),
# so its `ack`s come that much after each batch. A healthy gateway gets one batch per reading;
# a slow one gets the readings that gathered while a batch was in flight in one batch.
READINGS = 20
HZ = 1.0
# A commit slower than the send interval: the gateway is behind by 2.5 readings per batch.
SLOW_COMMIT_S = 2.5
# Keepalive PINGs and the odd ACK of the gateway's that no batch carries.
SPARE_DATAGRAMS = 2


async def _stream(tmp_path, pki, commit_s: float) -> tuple[int, int]:
    """(batches, datagrams) the agent sent for READINGS readings at HZ after its first."""
    gw = await GatewayRig(tmp_path, pki, slow=(commit_s,)).start()
    token = await gw.provision("slow")
    loop = asyncio.get_running_loop()
    agent = AgentRig(tmp_path / "slow", "slow", token, gw.host, gw.port, gw.pki["ca"],
                     send_interval_ms=round(1000 / HZ), boottime=loop.time).start()
    try:
        await until(lambda: agent.uplink.stats.state == "connected", 10, "connect")
        await agent.add(1)
        await until(lambda: agent.uplink.stats.readings_acked == 1, 10, "the first acked")
        link, stats = agent.uplink.link, agent.uplink.stats
        sent0, batches0 = link.datagrams_sent, stats.batches_sent
        await agent.stream(hz=HZ, seconds=READINGS / HZ)
        await until(lambda: stats.readings_acked == READINGS + 1, 60, "all acked")
        assert agent.uplink.link is link, "one connection throughout"
        assert await gw.seqs("slow") == list(range(1, READINGS + 2)), "each reading once"
        return stats.batches_sent - batches0, link.datagrams_sent - sent0
    finally:
        await agent.stop()
        await gw.stop()


def test_a_healthy_gateway_gets_a_batch_per_reading(quic_library, tmp_path, pki):
    (batches, datagrams), _ = emuclock.run(_stream(tmp_path, pki, 0.0))
    assert batches == READINGS
    assert datagrams <= batches + SPARE_DATAGRAMS, (datagrams, batches)


def test_a_slow_gateway_gets_the_readings_that_gathered_in_one_batch(quic_library, tmp_path,
                                                                      pki):
    (batches, datagrams), _ = emuclock.run(_stream(tmp_path, pki, SLOW_COMMIT_S))
    # one batch per ack, not one per reading (without the hold: READINGS batches, each with
    # an ACK-only datagram of the agent's for the gateway's ack while the next is in flight)
    assert batches <= READINGS / SLOW_COMMIT_S + 2, batches
    assert datagrams <= batches + SPARE_DATAGRAMS, (datagrams, batches)
