"""The link emulator (hil/linkemu.py): sans-IO decisions, and the agent through it."""

from __future__ import annotations

import asyncio

from hil.linkemu import DOWN, UP, LinkEmulator, LinkModel
from tests import emuclock
from tests.integration.net.rig import AgentRig, GatewayRig, until


def test_model_delay_jitter_order_and_loss_are_deterministic():
    m = LinkModel(delay_s=0.025, jitter_s=0.005, loss=0.1, seed=3)
    times = [m.decide(i * 0.001, UP, 100) for i in range(2000)]
    delivered = [t for t in times if t is not None]
    assert 0.07 < 1 - len(delivered) / len(times) < 0.13
    assert delivered == sorted(delivered), "no reordering within a direction"
    assert all(t - i * 0.001 >= 0.02 - 1e-9 for i, t in enumerate(times) if t is not None)
    again = LinkModel(delay_s=0.025, jitter_s=0.005, loss=0.1, seed=3)
    assert [again.decide(i * 0.001, UP, 100) for i in range(2000)] == times


def test_model_blackout_drops_both_directions_and_in_flight():
    m = LinkModel(delay_s=0.5)
    m.blackout(10.0, 5.0)
    assert m.decide(9.0, UP, 1) == 9.5
    assert m.decide(10.0, DOWN, 1) is None and m.decide(14.99, UP, 1) is None
    assert m.decide(15.0, UP, 1) == 15.5
    assert m.delivered(9.8, UP, 1) and not m.delivered(10.2, UP, 1)


def test_emulator_keeps_the_order_of_datagrams_due_at_the_same_instant():
    """A burst sent at one instant is delivered in order (the event loop's timer heap alone
    does not keep the order of timers due at the same time: a server's handshake flight and
    the 1-RTT answer behind it were swapped, which cost a QUIC client two round trips)."""
    emuclock.run(_burst_in_order())


async def _burst_in_order() -> None:
    loop = asyncio.get_running_loop()
    got: list[bytes] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.append(data)

    sink, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    emu = await LinkEmulator(sink.get_extra_info("sockname")[:2],
                             LinkModel(delay_s=0.05)).start()
    client, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    remote_addr=emu.address)
    try:
        sent = [b"%03d" % i for i in range(60)]
        client.sendto(sent[0])
        await until(lambda: len(got) == 1, 5, "the first (opens the upstream)")
        for data in sent[1:]:
            client.sendto(data)
        await until(lambda: len(got) == len(sent), 5, "all delivered")
        assert got == sent
    finally:
        client.close()
        emu.close()
        sink.close()


def test_hold_lets_the_first_flight_through_and_holds_what_follows_an_answer():
    """hold_after_first_flight: what a client sends before an answer reached it passes, what it
    sends afterwards waits for release() and then goes on in order (round trips counted)."""
    emuclock.run(_hold_after_first_flight())


async def _hold_after_first_flight() -> None:
    loop = asyncio.get_running_loop()
    at_server: list[bytes] = []
    at_client: list[bytes] = []

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            at_server.append(data)
            if data == b"first-2":
                self.transport.sendto(b"answer", addr)

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            at_client.append(data)

    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    emu = await LinkEmulator(server.get_extra_info("sockname")[:2],
                             LinkModel(delay_s=0.05)).start()
    emu.hold_after_first_flight()
    client, _ = await loop.create_datagram_endpoint(Client, remote_addr=emu.address)
    try:
        client.sendto(b"first-1")
        client.sendto(b"first-2")
        await until(lambda: at_client == [b"answer"], 5, "the answer to the first flight")
        client.sendto(b"second-1")
        client.sendto(b"second-2")
        await asyncio.sleep(1)  # emulated: 20 one-way delays pass, nothing more arrives
        assert at_server == [b"first-1", b"first-2"] and emu.held == 2
        assert emu.release() == 2 and emu.held == 0
        await until(lambda: len(at_server) == 4, 5, "the held datagrams")
        assert at_server == [b"first-1", b"first-2", b"second-1", b"second-2"]
        client.sendto(b"third")  # released: nothing held any more
        await until(lambda: len(at_server) == 5, 5, "a datagram after the release")
    finally:
        client.close()
        emu.close()
        server.close()


def test_lossy_jittery_link_with_nat_rebinding_same_connection(quic_library, tmp_path, pki):
    """8 s of a 10 Hz stream over 3 % loss and jitter, the NAT rebinding every 2 s; on the
    emulated clock (tests/emuclock.py), real parts as in the blackout test below."""
    emuclock.run(_lossy(tmp_path, pki))


async def _lossy(tmp_path, pki) -> None:
    gw = await GatewayRig(tmp_path, pki).start()
    token = await gw.provision("lossy")
    emu = await LinkEmulator((gw.host, gw.port),
                             LinkModel(delay_s=0.025, jitter_s=0.005, loss=0.03, seed=5)).start()
    host, port = emu.address
    agent = AgentRig(tmp_path / "a", "lossy", token, host, port, gw.pki["ca"],
                     boottime=asyncio.get_running_loop().time).start()
    try:
        await until(lambda: agent.uplink.stats.state == "connected", 15, "connected")
        link = agent.uplink.link
        streaming = asyncio.get_running_loop().create_task(agent.stream(10, 8))
        for _ in range(3):
            await asyncio.sleep(2)
            await emu.rebind()  # the carrier NAT gives us a new source port
        await streaming
        n = agent.appended
        await until(lambda: agent.uplink.stats.readings_acked >= n, 30, "all acked")
        assert agent.uplink.link is link and link.handshakes == 1
        assert gw.gateway.stats.connections == 1
        assert await gw.seqs("lossy") == list(range(1, n + 1))
        assert emu.model.stats.lost > 0 and emu.model.stats.rebinds == 3
    finally:
        await agent.stop()
        emu.close()
        await gw.stop()


def test_blackouts_3min_resumes_10min_reconnects(quic_library, tmp_path, pki):
    """A 3-minute blackout keeps the same QUIC connection (idle timeout 240 s); a 10-minute one
    reconnects, resuming with the stored session ticket; every reading stored exactly once.

    Emulated time (tests/emuclock.py): the real agent uplink and journal, the real in-process
    gateway with its SQLite store, and the link emulator, over loopback UDP, on an event loop
    whose clock jumps to the next timer whenever nothing else can happen; the 10 emulated
    minutes take ~20 s (618 s in real time). Chosen over driving aioquic's sans-IO connections
    and the `UplinkMachine` in memory, which would leave out the uplink's shell (`QuicLink`,
    the ticket file, probes, the journal's threads) and the gateway's protocol, store and
    ticket store: here every part that decides "same connection, reconnect, ticket, exactly
    once" is the shipped code (with IDLE_TIMEOUT_S at 120 s the 3-minute run reconnects and
    the test fails). Both vehicles run at once against one gateway. In real time:
    `python -m hil tunnel --blackout-s 180` (and 600), or `make hil`.
    """
    (short, long), loop = emuclock.run(_tunnels(tmp_path, pki))
    assert loop.time() - emuclock.START_S > 600 + 5, "the 10-minute blackout really passed"
    assert short["connects"] == 1, "3 minutes: the same connection"
    assert short["handshakes"] == 1 and short["migrations"] == 0 and short["same_link"]
    assert long["connects"] >= 2, "10 minutes: reconnected"
    assert long["resumed"], "resumed with the stored session ticket"
    for run in (short, long):
        assert run["blacked_out"] > 0, "the blackout dropped datagrams"
        assert run["stored"] == list(range(1, run["appended"] + 1)), "exactly once"


async def _tunnels(tmp_path, pki) -> tuple[dict, dict]:
    """Any event loop: emulated in the test, real with `asyncio.run` (about 10 minutes)."""
    gw = await GatewayRig(tmp_path, pki).start()
    loop = asyncio.get_running_loop()

    async def drive(name: str, blackout_s: float) -> dict:
        token = await gw.provision(name)
        emu = await LinkEmulator((gw.host, gw.port), LinkModel(delay_s=0.02, seed=9)).start()
        agent = AgentRig(tmp_path / name, name, token, *emu.address, gw.pki["ca"],
                         boottime=loop.time).start()  # the emulated machine never suspends
        try:
            await until(lambda: agent.uplink.stats.state == "connected", 15, "connected")
            first = agent.uplink.link
            await agent.stream(10, 5)
            emu.blackout(blackout_s)
            await agent.stream(10, blackout_s + 5)  # the GPS goes on; the journal keeps it
            n = agent.appended
            await until(lambda: agent.uplink.stats.readings_acked >= n, 120, f"{name} drained")
            return {"connects": agent.uplink.stats.connects, "handshakes": first.handshakes,
                    "migrations": first.migrations, "same_link": agent.uplink.link is first,
                    "resumed": agent.uplink.stats.extra.get("session_resumed"),
                    "blacked_out": emu.model.stats.blacked_out, "appended": n,
                    "stored": await gw.seqs(name)}
        finally:
            await agent.stop()
            emu.close()

    try:
        return tuple(await asyncio.gather(drive("tunnel-3min", 180), drive("tunnel-10min", 600)))
    finally:
        await gw.stop()
