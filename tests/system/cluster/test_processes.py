"""The cluster as processes on loopback: `python -m backend router`, three
`python -m backend --server-id N --router … --nats-url …` gateway nodes on one PostgreSQL, a
real nats-server, real agents. kill -9 of the node holding a vehicle mid-stream → its vehicles
continue through the others; then NATS restarts → fan-out to a hub node resumes, storage is
unaffected: PostgreSQL holds every reading once (docs/scaling.md §2, §4, §5). A browser on the
killed node's /ws (every node with --nats-url is also a hub node) reconnects to another node and
sees live positions again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg

from backend.cluster.cids import CidLayout
from backend.fanout import NatsFanout
from backend.hub import Hub
from backend.store import open_store
from hil.lifeline import stop_all
from tests.authhelp import add_user_token, bearer
from tests.integration.net.rig import AgentRig, until
from tests.system.cluster.logwait import wait_ready
from tests.system.cluster.natsfixture import NatsServer

REPO = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
VEHICLES = 6


def _spawn(tmp: Path, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
    log = tmp / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "backend", *args], stdout=open(log, "ab"),
                         stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return p, log


async def _browser(ports: list[int], token: str) -> None:
    """A browser behind an HTTP load balancer: /ws on the first node that answers, again on the
    next when its node goes away; counts positions per node in `_browser.seen` (more than
    VEHICLES: beyond the snapshot of last positions each subscription starts with)."""
    async with aiohttp.ClientSession(headers=bearer(token)) as http:
        for port in ports * 3:  # bounded: three rounds over the nodes
            try:
                async with http.ws_connect(f"http://{HOST}:{port}/ws") as ws:
                    await ws.send_json({"op": "subscribe", "topic": "live_updates:all"})
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        if "feature" in msg.json():
                            _browser.seen[port] = _browser.seen.get(port, 0) + 1
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


_browser.seen = {}


async def _seqs(url: str, vehicle: str) -> list[int]:
    db = await asyncpg.connect(url)
    try:
        rows = await db.fetch("SELECT seq FROM vehicle_telemetry WHERE vehicle_id=$1 "
                              "ORDER BY seq", vehicle)
    finally:
        await db.close()
    return [r["seq"] for r in rows]


async def test_kill9_node_and_nats_restart_mid_stream_lose_and_duplicate_nothing(
        tmp_path, pki, pg_url, cluster_key):
    _browser.seen.clear()
    nats = NatsServer().start()
    procs = []
    agents = []
    hub_node = None
    try:
        router = _spawn(tmp_path, "router", ["--cluster-key-file", cluster_key[0], "router",
                                             "--listen", f"{HOST}:0",
                                             "--tunnel", f"{HOST}:0"])
        procs.append(router)
        public, tunnel = wait_ready(*router, "router ready")
        nodes, http_ports = {}, {}
        for sid in (1, 2, 3):
            nodes[sid] = _spawn(tmp_path, f"node{sid}", [
                "--db", pg_url, "--cert", pki["cert"], "--key", pki["key"],
                "--quic-host", HOST, "--quic-port", "0", "--http-port", "0",
                "--ticket-file", str(tmp_path / f"tickets{sid}.sqlite"),
                "--server-id", str(sid), "--router", f"{HOST}:{tunnel}",
                "--cluster-key-file", cluster_key[0], "--nats-url", nats.url])
            procs.append(nodes[sid])
        for sid in nodes:
            http_ports[sid], _ = wait_ready(*nodes[sid], "backend ready")
        store = open_store(pg_url)
        await store.open()
        try:
            tokens = {f"p{i}": await store.add_vehicle(f"p{i}") for i in range(VEHICLES)}
            api = await add_user_token(store)
        finally:
            await store.close()
        await asyncio.sleep(1.0)  # the router hears every node's heartbeat
        for v, token in tokens.items():
            # aioquic on these agents: `node_of` reads the connection ID the client sends to,
            # which only aioquic exposes (a qh3 agent through the router: test_routed.py)
            agents.append(AgentRig(tmp_path / v, v, token, HOST, public, pki["ca"],
                                   quic_library="aioquic").start())

        def node_of(a):
            link = a.uplink.link
            if link is None or a.uplink.stats.state != "connected":
                return None
            return CidLayout().server_id(link.conn._peer_cid.cid)

        await until(lambda: all(node_of(a) for a in agents), 60, "all agents connected")
        hub_node = await NatsFanout(nats.url, Hub()).start()  # a hub node's subscription
        streams = [asyncio.get_running_loop().create_task(a.stream(10, 8)) for a in agents]
        await asyncio.sleep(2)
        victim = node_of(agents[0])
        moved = [a for a in agents if node_of(a) == victim]
        browser = asyncio.get_running_loop().create_task(
            _browser([http_ports[victim]] + [http_ports[s] for s in nodes if s != victim], api))
        await until(lambda: browser.done() or _browser.seen.get(http_ports[victim], 0) > VEHICLES,
                    20,
                    "the browser sees live positions on the doomed node")
        assert _browser.seen.get(http_ports[victim], 0) > VEHICLES
        nodes[victim][0].kill()  # kill -9 mid-stream
        nodes[victim][0].wait(5)
        await asyncio.sleep(1)
        assert hub_node.stats["received"] > 0, "fan-out from the nodes to the hub node"
        nats.kill()  # NATS restarts mid-stream
        nats.start()
        await until(lambda: hub_node.stats["reconnects"] >= 1, 20, "hub node reconnected")
        seen = hub_node.stats["received"]
        await until(lambda: hub_node.stats["received"] > seen, 20, "fan-out resumed")
        await asyncio.gather(*streams)
        others = [http_ports[s] for s in nodes if s != victim]
        await until(lambda: browser.done()
                    or any(_browser.seen.get(p, 0) > VEHICLES for p in others), 20,
                    "the browser reconnected to another hub node and sees live positions")
        assert any(_browser.seen.get(p, 0) > VEHICLES for p in others)
        browser.cancel()
        await until(lambda: all(node_of(a) not in (None, victim) for a in moved), 60,
                    "the dead node's vehicles on live nodes")
        await until(lambda: all(a.uplink.stats.readings_acked >= a.appended for a in agents),
                    60, "everything acked")
        for a in agents:
            assert a.appended == 80
            assert await _seqs(pg_url, a.config.vehicle_id) == list(range(1, 81)), \
                f"{a.config.vehicle_id}: 0 lost, 0 duplicated"
        assert moved, "the killed node held at least one vehicle"
    finally:
        for a in agents:
            await a.stop()
        if hub_node is not None:
            await hub_node.stop()
        stop_all([p for p, _ in procs])
        nats.close()
