"""`python -m backend --reuseport 2` on loopback: a supervisor and two gateway worker processes
on one UDP port (backend/cluster/workers.py), one PostgreSQL, a real nats-server, real agents.
Agents that migrate across local addresses keep their one connection on their process (an
ack after every move: only the process holding the connection can give it); kill -9 of a
worker → its vehicles reconnect, the supervisor starts it again on its socket, and PostgreSQL
holds every reading exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from backend.cluster.cids import CidLayout
from backend.cluster.reuseport import reuseport_socket
from backend.cluster.workers import bind_group
from backend.store import open_store
from tests.integration.net.rig import AgentRig, until
from tests.system.cluster.logwait import log_wait
from tests.system.cluster.natsfixture import NatsServer

REPO = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
VEHICLES = 4
MIGRATIONS = 3


async def _seqs(url: str, vehicle: str) -> list[int]:
    db = await asyncpg.connect(url)
    try:
        rows = await db.fetch("SELECT seq FROM vehicle_telemetry WHERE vehicle_id=$1 "
                              "ORDER BY seq", vehicle)
    finally:
        await db.close()
    return [r["seq"] for r in rows]


def _process_of(agent: AgentRig) -> int | None:
    """The server id (the worker) in the CID the agent sends to, while connected."""
    link = agent.uplink.link
    if link is None or agent.uplink.stats.state != "connected":
        return None
    return CidLayout().server_id(link.conn._peer_cid.cid)


async def _moves(agent: AgentRig) -> None:
    """MIGRATIONS moves to new local addresses, each followed by an ack on the new path."""
    for i in range(MIGRATIONS):
        await agent.add(5)
        before = agent.uplink.stats.readings_acked
        await agent.uplink.migrate(f"127.0.0.{2 + i}")
        await until(lambda b=before: agent.uplink.stats.readings_acked > b, 20,
                    "an ack on the new path")


@pytest.mark.parametrize("library", ["qh3", "aioquic"])
async def test_two_workers_on_one_port_keep_migrations_and_survive_kill9(tmp_path, pki, pg_url,
                                                                         library):
    """On a qh3 gateway the CIDs a connection moves to carry no server id: half of them reach
    the other worker, which relays them (backend/cluster/relay.py); the ack after each move is
    the owner's. The agents run aioquic, whose current CID the test reads."""
    nats = NatsServer().start()
    log = tmp_path / "backend.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    sup = subprocess.Popen(
        [sys.executable, "-m", "backend", "--reuseport", "2", "--db", pg_url,
         "--cert", pki["cert"], "--key", pki["key"], "--quic-library", library,
         "--quic-host", HOST, "--quic-port", "0", "--http-host", HOST, "--http-port", "0",
         "--nats-url", nats.url],  # session tickets: shared in --db by default
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env, cwd=REPO,
        start_new_session=True)
    agents: list[AgentRig] = []
    try:
        (port,) = log_wait(sup, log, r"gateway workers on udp port (\d+)")
        log_wait(sup, log, r"backend ready", 2)
        store = open_store(pg_url)
        await store.open()
        try:
            tokens = {f"r{i}": await store.add_vehicle(f"r{i}") for i in range(VEHICLES)}
        finally:
            await store.close()
        for v, token in tokens.items():
            agents.append(AgentRig(tmp_path / v, v, token, HOST, int(port), pki["ca"],
                                   quic_library="aioquic").start())
        await until(lambda: all(_process_of(a) is not None for a in agents), 30,
                    "all agents connected")
        owners = [_process_of(a) for a in agents]
        assert set(owners) <= {0, 1}, "every CID names one of the two workers"
        links = [a.uplink.link for a in agents]
        await asyncio.gather(*(_moves(a) for a in agents))
        for a, link, owner in zip(agents, links, owners, strict=True):
            assert a.uplink.link is link, "the same connection after every move"
            assert link.migrations == MIGRATIONS and link.handshakes == 1
            if library == "aioquic":  # qh3's CIDs after the first carry no server id
                assert _process_of(a) == owner, "still on the process that issued its CIDs"

        victim = owners[0]
        pid = int(log_wait(sup, log, rf"reuseport worker {victim} started \(pid (\d+)\)")[-1])
        moved = [a for a, o in zip(agents, owners, strict=True) if o == victim]
        os.kill(pid, signal.SIGKILL)  # a worker dies mid-stream without a word
        for a in agents:
            await a.add(20)
        log_wait(sup, log, rf"reuseport worker {victim} started", 2)  # started again
        await until(lambda: all(a.uplink.link is not link and _process_of(a) is not None
                                for a, link in zip(agents, links, strict=True) if a in moved),
                    60, "the dead worker's vehicles reconnected")
        await until(lambda: all(a.uplink.stats.readings_acked >= a.appended for a in agents),
                    60, "everything acked")
        for a in agents:
            assert a.appended == 5 * MIGRATIONS + 20
            assert await _seqs(pg_url, a.config.vehicle_id) == list(range(1, a.appended + 1)), \
                f"{a.config.vehicle_id}: 0 lost, 0 duplicated"
        workers = [int(p) for p in re.findall(r"reuseport worker \d started \(pid (\d+)\)",
                                              log.read_text())]
        sup.send_signal(signal.SIGTERM)  # a graceful stop of the supervisor stops its workers
        assert sup.wait(30) == 0
        for p in workers:
            assert not os.path.exists(f"/proc/{p}"), f"worker {p} stopped with its supervisor"
    finally:
        for a in agents:
            await a.stop()
        if sup.poll() is None:
            sup.send_signal(signal.SIGTERM)  # it stops its workers
            try:
                sup.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(sup.pid, signal.SIGKILL)  # its session: itself and its workers
                sup.wait(5)
        nats.close()


def test_a_port_held_by_another_reuseport_group_is_refused():
    """Another supervisor's group (same user) would take our sockets in silently, its members
    before ours, and steer our server ids to its processes: refused instead."""
    with reuseport_socket(HOST, 0) as other:
        with pytest.raises(OSError):
            bind_group(HOST, other.getsockname()[1], 2)
    socks = bind_group(HOST, 0, 2)
    try:
        assert socks[0].getsockname() == socks[1].getsockname()
    finally:
        for s in socks:
            s.close()
