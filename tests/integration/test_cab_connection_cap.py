"""The cab server's bound on connections (agent/cab/capped.py), with real TLS sockets on
loopback: MAX_CONNECTIONS tablets' connections are served; the next one is answered 503 with
Retry-After and closed, without taking a place; once one ends, a new one is served again."""

from __future__ import annotations

import asyncio
import ssl
from types import SimpleNamespace

from agent.cab import capped
from agent.cab.capped import MAX_CONNECTIONS, RETRY_AFTER_S
from agent.cab.server import CabServer
from agent.config import CabConfig
from tests.integration.net.rig import until


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               path: str = "/login") -> tuple[int, dict, bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
    headers = {}
    while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return status, headers, body


async def test_connections_past_the_cap_are_refused_503_until_one_ends(tmp_path):
    agent = SimpleNamespace(config=SimpleNamespace(
        vehicle_id="v1", journal=SimpleNamespace(path=str(tmp_path / "j.sqlite"))))
    server = CabServer(CabConfig(enabled=True, listen="127.0.0.1", port=0), agent)
    assert await server.start()
    ctx = ssl.create_default_context(cafile=str(server.files.ca_cert))
    port = int(server.origin.rsplit(":", 1)[1])
    held: list[asyncio.StreamWriter] = []

    async def connect():
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        held.append(writer)
        return reader, writer

    try:
        for _ in range(MAX_CONNECTIONS):  # kept alive, as a browser keeps them
            assert (await _get(*await connect()))[0] == 200
        assert server.status()["connections"] == MAX_CONNECTIONS
        reader, writer = await connect()
        status, headers, body = await _get(reader, writer)
        assert (status, headers["retry-after"]) == (503, str(RETRY_AFTER_S))
        assert b"too many connections" in body
        assert await asyncio.wait_for(reader.read(), 10) == b"", "closed after the answer"
        assert server.status()["connections"] == MAX_CONNECTIONS
        assert server.status()["refused"] == 1
        first = held.pop(0)  # one tablet's connection ends
        first.close()
        await until(lambda: server.status()["connections"] < MAX_CONNECTIONS, 10,
                    "the place given back")
        assert (await _get(*await connect()))[0] == 200
    finally:
        for w in held:
            w.close()
        await server.close()


async def test_a_handshake_that_never_comes_is_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(capped, "HANDSHAKE_TIMEOUT_S", 0.5)
    agent = SimpleNamespace(config=SimpleNamespace(
        vehicle_id="v1", journal=SimpleNamespace(path=str(tmp_path / "j.sqlite"))))
    server = CabServer(CabConfig(enabled=True, listen="127.0.0.1", port=0), agent)
    assert await server.start()
    port = int(server.origin.rsplit(":", 1)[1])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # plain TCP, silent
        assert await asyncio.wait_for(reader.read(), 30) == b"", "closed by the server"
        writer.close()
        assert server.status()["connections"] == 0
    finally:
        await server.close()
