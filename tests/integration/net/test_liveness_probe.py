"""The agent's liveness probe against a real gateway (docs/protocol.md §8): a Version
Negotiation exchange, which costs the gateway no handshake, in every admission state, with
both QUIC libraries; and a gateway that forgot the agent's connection (as after kill -9) is
found by it and reconnected to with one handshake, not two. Emulated clock (tests/emuclock.py).
"""

from __future__ import annotations

import asyncio

from agent.quic_link import _udp_socket, probe_version
from agent.version_probe import VersionProbe
from tests import emuclock
from tests.integration.net.rig import AgentRig, GatewayRig, until


def test_the_gateway_answers_the_probe_without_a_handshake(quic_library, tmp_path, pki):
    """Answered while the gateway admits, asks for a Retry and refuses as busy alike, with no
    connection and no handshake slot taken; a datagram under 1,200 bytes gets no answer."""
    (answers, short_answered, connections, stats), _ = emuclock.run(
        _probe_each_admission_state(tmp_path, pki))
    assert answers == [True, True, True]
    assert not short_answered, "a datagram that could not open a connection was answered"
    assert connections == 0, "the probe opened a connection"
    assert stats == (3, 1), stats


async def _probe_each_admission_state(tmp_path, pki):
    gw = await GatewayRig(tmp_path, pki).start()
    edge = gw.gateway._server
    admission = edge.admission
    try:
        answers = [await probe_version((gw.host, gw.port), gw.host, 2.0)]
        admission.retry_above = 0  # every new connection would be asked to validate
        answers.append(await probe_version((gw.host, gw.port), gw.host, 2.0))
        admission._refuse_until = float("inf")  # every new connection refused `busy`
        answers.append(await probe_version((gw.host, gw.port), gw.host, 2.0))
        short_answered = await _short_probe_answered(gw, 2.0)
        return (answers, short_answered, len(edge._connections) + admission.handshaking,
                (edge.stats["version_negotiation"], edge.stats["version_negotiation_too_short"]))
    finally:
        await gw.stop()


async def _short_probe_answered(gw: GatewayRig, wait_s: float) -> bool:
    """A probe cut to 1,199 bytes: answered within `wait_s`?"""
    loop = asyncio.get_running_loop()
    probe, got = VersionProbe(), loop.create_future()

    class _Answers(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(_Answers, sock=_udp_socket(gw.host))
    try:
        transport.sendto(probe.datagram[:1199], (f"::ffff:{gw.host}", gw.port, 0, 0))
        done, _ = await asyncio.wait((got,), timeout=wait_s)
        return bool(done)
    finally:
        transport.close()


def test_a_forgotten_connection_is_found_and_reconnected_with_one_handshake(quic_library,
                                                                           tmp_path, pki):
    """The gateway drops the agent's connection without a word (its CIDs route nowhere, as a
    gateway restarted after kill -9): the agent probes, finds the gateway alive and the
    connection silent, and reconnects: one new handshake at the gateway (the probe of
    revision 5 and before was a handshake too: two), every reading stored once."""
    (opened, negotiated, seqs, took), _ = emuclock.run(
        _forgotten(tmp_path, pki))
    print(f"readings acked again {took:.2f} s (emulated) after the gateway forgot")
    assert opened == 1, f"{opened} handshakes at the gateway: the probe's own?"
    assert negotiated >= 1, "no probe reached the gateway"
    assert seqs == list(range(1, 11))


async def _forgotten(tmp_path, pki):
    gw = await GatewayRig(tmp_path, pki).start()
    token = await gw.provision("forgotten")
    edge = gw.gateway._server
    opened: list[float] = []
    open_connection = edge._open

    def counted(*args, **kw):
        opened.append(loop.time())
        return open_connection(*args, **kw)

    edge._open = counted
    loop = asyncio.get_running_loop()
    agent = AgentRig(tmp_path / "state", "forgotten", token, gw.host, gw.port, gw.pki["ca"],
                     boottime=loop.time).start()
    try:
        await agent.add(5)
        await until(lambda: agent.uplink.stats.readings_acked >= 5, 15, "acked")
        [conn] = set(edge._connections.values())
        edge.forget(conn)  # its packets are dropped unread from now on
        forgot_at, before, negotiated = loop.time(), len(opened), edge.stats[
            "version_negotiation"]
        await agent.add(5)
        await until(lambda: agent.uplink.stats.readings_acked >= 10, 120, "acked again")
        return (len(opened) - before, edge.stats["version_negotiation"] - negotiated,
                await gw.seqs("forgotten"), loop.time() - forgot_at)
    finally:
        await agent.stop()
        await gw.stop()
