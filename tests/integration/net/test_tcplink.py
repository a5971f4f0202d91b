"""The TCP link emulator (hil/tcplink.py): sans-IO decisions, and real connections through it."""

from __future__ import annotations

import asyncio

import pytest

from hil.linkemu import DOWN, UP
from hil.tcplink import DROP, FORWARD, RESET, Decision, TcpLinkEmulator, TcpLinkModel


def test_model_delays_each_direction_in_order_and_counts_delivered_bytes():
    m = TcpLinkModel(delay_s=0.025, jitter_s=0.01, seed=4)
    ups = [m.from_client(i * 0.001, 0, 100) for i in range(500)]
    assert all(d.action == FORWARD for d in ups)
    times = [d.at for d in ups]
    assert times == sorted(times), "a stream is never reordered"
    assert all(t >= i * 0.001 + 0.015 - 1e-9 for i, t in enumerate(times))
    assert m.from_server(0.0, 0, 10).action == FORWARD
    assert m.connect_delay() == pytest.approx(0.05), "the SYN / SYN-ACK round trip"
    m.delivered(0.03, UP, 100)
    m.delivered(0.03, DOWN, 10)
    m.delivered(0.03, UP, 0)  # end of stream: no bytes
    assert (m.stats.bytes_up, m.stats.bytes_down, m.stats.datagrams_up) == (100, 10, 1)


def test_rebind_forgets_open_connections_only():
    m = TcpLinkModel(delay_s=0.025)
    old = m.generation
    m.rebind()
    # the client's next segment goes up, the server's RST comes back: one round trip
    assert m.from_client(10.0, old, 50) == Decision(RESET, 10.05)
    assert m.from_client(10.0, old, 0) == Decision(RESET, 10.05), "a FIN meets the RST too"
    assert m.from_server(10.0, old, 50) == Decision(DROP), "the server's bytes are lost"
    new = m.generation
    assert m.from_client(10.0, new, 50) == Decision(FORWARD, 10.025)
    assert m.stats.rebinds == 1


def test_model_refuses_loss_and_blackouts():
    m = TcpLinkModel(delay_s=0.01)
    m.link.loss = 0.1
    with pytest.raises(ValueError):
        m.from_client(0.0, 0, 1)
    m = TcpLinkModel()
    m.link.blackout(0.0, 1.0)
    with pytest.raises(ValueError):
        m.from_server(0.5, 0, 1)


@pytest.fixture
async def echo():
    async def serve(r, w):
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2]
    server.close()


async def roundtrip(r: asyncio.StreamReader, w: asyncio.StreamWriter, data: bytes) -> bytes:
    w.write(data)
    await w.drain()
    return await asyncio.wait_for(r.readexactly(len(data)), 5)


async def test_relay_echoes_then_resets_after_rebind_and_serves_new_connections(echo):
    emu = await TcpLinkEmulator(echo, TcpLinkModel(delay_s=0.005)).start()
    try:
        r, w = await asyncio.open_connection(*emu.address)
        assert await roundtrip(r, w, b"hello") == b"hello"
        assert emu.model.stats.bytes_up == 5 and emu.model.stats.bytes_down == 5
        emu.rebind()  # the client is not told ...
        w.write(b"after")  # ... until its next segment meets the reset
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(r.readexactly(5), 5)
        w.close()
        r2, w2 = await asyncio.open_connection(*emu.address)
        assert await roundtrip(r2, w2, b"again") == b"again"
        w2.close()
    finally:
        await emu.close()


async def test_cut_resets_every_connection_at_once(echo):
    emu = await TcpLinkEmulator(echo, TcpLinkModel()).start()
    try:
        r, w = await asyncio.open_connection(*emu.address)
        assert await roundtrip(r, w, b"x") == b"x"
        emu.cut()
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(r.readexactly(1), 5)
        w.close()
    finally:
        await emu.close()
