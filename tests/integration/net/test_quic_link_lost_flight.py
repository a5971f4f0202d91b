"""The agent's link on a resumed attempt whose first flights are all lost (a tunnel, a dead
cell): qh3 2.1.0's core sends its first probe, then raises "missing OneRtt packet key" at every
later one (docs/upstream/qh3-initial-retransmission.md). The error must stay that connection's:
nothing thrown into the event loop, the timer still armed and the attempt still open for a late
answer, where before the error escaped and the attempt's timer was lost. An attempt that hears
nothing ends UNANSWERED_AFTER_REFUSAL_S after the first refusal, and the uplink starts a fresh
one long before its connect timeout; one whose answer is only late completes, resumed.

The first test's server is a UDP socket on loopback that never answers (the session ticket
comes from a real in-memory handshake with the same CA); the others run the real agent and an
in-process gateway through `hil/linkemu` on the emulated clock (tests/emuclock.py)."""

from __future__ import annotations

import asyncio

from agent.quic_link import UNANSWERED_AFTER_REFUSAL_S, QuicLink
from agent.uplink import CONNECT_TIMEOUT_S
from geostream import ALPN
from geostream.quic import library
from hil.linkemu import LinkEmulator, LinkModel
from tests import emuclock
from tests.integration.net.rig import AgentRig, GatewayRig, until
from tests.integration.net.test_quic_tls_trim import certs, ticket_and_hole  # noqa: F401

PAST_SECOND_PROBE_S = 2.5  # qh3's probes come at ~0.9 s and ~1.5 s, the next at ~2.9 s


async def test_a_resumed_attempt_that_hears_nothing_keeps_its_timer(certs):  # noqa: F811
    lib = library("qh3")
    tickets, hole = ticket_and_hole(lib, certs)
    errors: list = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN],
                                    server_name="localhost")
        cfg.load_verify_locations(cafile=certs["ca"])
        cfg.session_ticket = tickets[0]
        link = QuicLink(cfg, hole.getsockname(), lambda *a: None, lib=lib)
        await link.start("127.0.0.1")
        link.send(link.conn.get_next_available_stream_id(), b"hello as 0-RTT")
        await asyncio.sleep(PAST_SECOND_PROBE_S)
        assert errors == []  # nothing thrown into the event loop
        assert link.core_refusals >= 1  # the second probe was refused
        assert not link.closed.is_set() and not link.connected.done()  # still open
        assert link._timer is not None  # and its timer still armed
        assert link.datagrams_sent >= 2  # the first flight and the one probe qh3 sends
    finally:
        loop.set_exception_handler(None)
        link.abort()
        hole.close()


# Long enough to swallow a resumed attempt's first flight and qh3's one probe (~0.9 s later).
FIRST_FLIGHT_DARK_S = 1.2
# One way, each direction: the answer to the first flight comes after qh3's first refusal
# (~1.5 s), well within UNANSWERED_AFTER_REFUSAL_S of it.
LATE_ANSWER_ONE_WAY_S = 1.2


async def _resume_after(tmp_path, pki, model: LinkModel, dark_s: float) -> tuple[dict, float]:
    """An agent connects once through the link (its ticket is stored) and stops; then a new
    agent on the same state starts while the link is dark for `dark_s`, and its resumed
    attempt runs over `model`. Returns the new agent's stats (`extra`, and the core refusals
    of the connection that took its first ack) and the emulated seconds from its start to
    that ack."""
    gw = await GatewayRig(tmp_path, pki, quic_library="qh3").start()
    token = await gw.provision("lost")
    loop = asyncio.get_running_loop()
    first = await LinkEmulator((gw.host, gw.port)).start()
    agent = None
    try:
        agent = AgentRig(tmp_path / "lost", "lost", token, *first.address, gw.pki["ca"],
                         boottime=loop.time, quic_library="qh3").start()
        await agent.add(1)
        await until(lambda: agent.uplink.stats.readings_acked == 1, 15, "the first ack")
        await until(lambda: agent.uplink.ticket_path.exists(), 5, "a ticket stored")
        await agent.stop()
        emu = await LinkEmulator((gw.host, gw.port), model).start()
        try:
            if dark_s:
                emu.blackout(dark_s)
            start = loop.time()
            agent = AgentRig(tmp_path / "lost", "lost", token, *emu.address, gw.pki["ca"],
                             boottime=loop.time, quic_library="qh3").start()
            await agent.add(1)
            await until(lambda: agent.uplink.stats.readings_acked == 1, 60, "the second ack")
            took = loop.time() - start
            return {**agent.uplink.stats.extra,
                    "core_refusals": agent.uplink.link.core_refusals}, took
        finally:
            await agent.stop()
            emu.close()
    finally:
        first.close()
        await gw.stop()


def test_an_unanswered_resumed_attempt_gives_way_to_a_fresh_one(tmp_path, pki):
    """The first flight and the one probe are lost: the attempt ends UNANSWERED_AFTER_REFUSAL_S
    after the core's first refusal, and the fresh one resumes with the same ticket (the
    gateway never saw it), long before the 10 s connect timeout would have ended the first."""
    (stats, took), _ = emuclock.run(_resume_after(tmp_path, pki, LinkModel(),
                                                   FIRST_FLIGHT_DARK_S))
    assert stats["session_resumed"] is True
    assert took < CONNECT_TIMEOUT_S, took


def test_a_late_answer_to_a_resumed_attempt_still_completes_it(tmp_path, pki):
    """The gateway's answer to the first flight comes after the core's first refusal: the
    attempt is kept and completes resumed with its 0-RTT (given up at the refusal, the fresh
    attempt would find the ticket spent, and give up at its own refusal too)."""
    assert LATE_ANSWER_ONE_WAY_S * 2 < 1.5 + UNANSWERED_AFTER_REFUSAL_S
    (stats, _), _ = emuclock.run(_resume_after(
        tmp_path, pki, LinkModel(delay_s=LATE_ANSWER_ONE_WAY_S), 0.0))
    assert stats["core_refusals"] >= 1  # the core refused before the answer came
    assert (stats["session_resumed"], stats["early_data_accepted"]) == (True, True)
