"""The cluster as processes on loopback: `python -m backend router`, three
`python -m backend --server-id N --router … --nats-url …` gateway nodes on one PostgreSQL, a
real nats-server, real agents. kill -9 of the node holding a vehicle mid-stream → its vehicles
continue through the others; PostgreSQL holds every reading once (docs/scaling.md §2, §4)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from backend.cluster.cids import CidLayout
from backend.store import open_store
from tests.net.rig import AgentRig, free_udp_port, until

from .natsfixture import NatsServer, free_tcp_port

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
VEHICLES = 6
READY_S = 60.0


def _spawn(tmp: Path, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
    log = tmp / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "backend", *args], stdout=open(log, "ab"),
                         stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return p, log


def _wait_ready(proc: subprocess.Popen, log: Path, word: str) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if word in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"{log.name} exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{log.name} not ready: {log.read_text()[-2000:]}")


async def _seqs(url: str, vehicle: str) -> list[int]:
    db = await asyncpg.connect(url)
    try:
        rows = await db.fetch("SELECT seq FROM vehicle_telemetry WHERE vehicle_id=$1 "
                              "ORDER BY seq", vehicle)
    finally:
        await db.close()
    return [r["seq"] for r in rows]


async def test_kill9_gateway_node_mid_stream_loses_and_duplicates_nothing(tmp_path, pki, pg_url):
    nats = NatsServer().start()
    procs = []
    agents = []
    try:
        public, tunnel = free_udp_port(), free_udp_port()
        router = _spawn(tmp_path, "router", ["router", "--listen", f"{HOST}:{public}",
                                             "--tunnel", f"{HOST}:{tunnel}"])
        procs.append(router)
        _wait_ready(*router, "router ready")
        nodes = {}
        for sid in (1, 2, 3):
            nodes[sid] = _spawn(tmp_path, f"node{sid}", [
                "--db", pg_url, "--cert", pki["cert"], "--key", pki["key"],
                "--quic-host", HOST, "--quic-port", str(free_udp_port()),
                "--http-port", str(free_tcp_port()),
                "--ticket-file", str(tmp_path / f"tickets{sid}.sqlite"),
                "--server-id", str(sid), "--router", f"{HOST}:{tunnel}",
                "--nats-url", nats.url])
            procs.append(nodes[sid])
        for sid in nodes:
            _wait_ready(*nodes[sid], "backend ready")
        store = open_store(pg_url)
        await store.open()
        try:
            tokens = {f"p{i}": await store.add_vehicle(f"p{i}") for i in range(VEHICLES)}
        finally:
            await store.close()
        await asyncio.sleep(1.0)  # the router hears every node's heartbeat
        for v, token in tokens.items():
            agents.append(AgentRig(tmp_path / v, v, token, HOST, public, pki["ca"]).start())

        def node_of(a):
            link = a.uplink.link
            if link is None or a.uplink.stats.state != "connected":
                return None
            return CidLayout().server_id(link.conn._peer_cid.cid)

        await until(lambda: all(node_of(a) for a in agents), 60, "all agents connected")
        streams = [asyncio.get_running_loop().create_task(a.stream(10, 6)) for a in agents]
        await asyncio.sleep(2)
        victim = node_of(agents[0])
        moved = [a for a in agents if node_of(a) == victim]
        nodes[victim][0].kill()  # kill -9 mid-stream
        nodes[victim][0].wait(5)
        await asyncio.gather(*streams)
        await until(lambda: all(node_of(a) not in (None, victim) for a in moved), 60,
                    "the dead node's vehicles on live nodes")
        await until(lambda: all(a.uplink.stats.readings_acked >= a.appended for a in agents),
                    60, "everything acked")
        for a in agents:
            assert a.appended == 60
            assert await _seqs(pg_url, a.config.vehicle_id) == list(range(1, 61)), \
                f"{a.config.vehicle_id}: 0 lost, 0 duplicated"
        assert moved, "the killed node held at least one vehicle"
    finally:
        for a in agents:
            await a.stop()
        for p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        nats.kill()
