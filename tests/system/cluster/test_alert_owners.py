"""One owner process per vehicle for the clock-driven alert rules (stale, offline), with the
rules on and the gateway as real processes on one PostgreSQL (docs/scaling.md §4 "Who owns a
vehicle"): `python -m backend --reuseport 2` (two workers on one port, the kernel steering by
connection ID) and a router with two `--server-id` nodes.

The story, per cluster: four agents stream (no stale, and no offline alert while connected:
before the owners, the process not holding a vehicle called it offline); they fall silent
(each vehicle stale exactly once); the vehicles of one process disconnect and that process
is killed with -9 before their offline rule is due (its vehicles are taken over: offline
exactly once each, raised by a process that never held them); they reconnect, necessarily to
another process, and send again (the new owner closes both alerts; still one of each).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from backend.cluster.cids import CidLayout
from backend.store import open_store
from geostream.clock import wall_ms
from tests.integration.net.rig import AgentRig, until
from tests.system.cluster.logwait import log_wait, wait_ready
from tests.system.cluster.natsfixture import NatsServer

REPO = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
VEHICLES = 4
STALE_S = 3
OFFLINE_S = 6
CONFIG = f"""
alert_timer_s = 0.5
[alerts.stale]
after_s = {STALE_S}
[alerts.offline]
after_s = {OFFLINE_S}
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _server_id(agent: AgentRig) -> int | None:
    """The server id in the CID the agent sends to, while connected."""
    link = agent.uplink.link
    if link is None or agent.uplink.stats.state != "connected":
        return None
    return CidLayout().server_id(link.conn._peer_cid.cid)


async def _add_now(agent: AgentRig) -> None:
    """One position stamped with the wall clock (the rig's default times are years old, which
    the stale rule would call stale at once)."""
    agent._t0 = wall_ms() - 100 * (agent.appended + 1)
    await agent.add(1)


async def _timed_alerts(url: str, since_ms: int) -> dict[str, list[tuple[str, str]]]:
    """(rule, state) of every stale and offline alert that began at `since_ms` or later (once
    the fleet was up), per vehicle. A process counts a vehicle's offline time from its own
    start until the vehicle connects, so on a loaded machine, where the second node takes
    seconds to come up, a vehicle can rightly be offline (and closed again) before it ever
    connected."""
    db = await asyncpg.connect(url)
    try:
        rows = await db.fetch(
            "SELECT vehicle_id, rule, state FROM alerts WHERE rule IN ('stale', 'offline') "
            "AND start_time >= to_timestamp($1::bigint / 1000.0) "
            "ORDER BY vehicle_id, rule, start_time", since_ms)
    finally:
        await db.close()
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["vehicle_id"], []).append((r["rule"], r["state"]))
    return out


class _Reuseport:
    """`python -m backend --reuseport 2`: the supervisor starts a killed worker again."""

    def __init__(self, tmp: Path, pki: dict, pg_url: str, nats: NatsServer, config: Path):
        self.log = tmp / "backend.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "--config", str(config), "--reuseport", "2",
             "--db", pg_url, "--cert", pki["cert"], "--key", pki["key"],
             "--quic-library", "aioquic", "--quic-host", HOST, "--quic-port", "0",
             "--http-host", HOST, "--http-port", "0", "--nats-url", nats.url],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=_env(), cwd=REPO,
            start_new_session=True)
        (port,) = log_wait(self.proc, self.log, r"gateway workers on udp port (\d+)")
        log_wait(self.proc, self.log, r"backend ready", 2)
        self.port = int(port)

    def kill(self, server_id: int) -> None:
        pid = int(log_wait(self.proc, self.log,
                            rf"reuseport worker {server_id} started \(pid (\d+)\)")[-1])
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it stops its workers
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class _Routed:
    """`python -m backend router` and two nodes (server ids 1 and 2) behind it."""

    def __init__(self, tmp: Path, pki: dict, pg_url: str, nats: NatsServer, config: Path,
                 key: str):
        self.procs: dict[str, subprocess.Popen] = {}
        router_log = self._spawn(tmp, "router", [
            "--cluster-key-file", key, "router", "--listen", f"{HOST}:0",
            "--tunnel", f"{HOST}:0"])
        ports = wait_ready(self.procs["router"], router_log, "router ready")
        self.port, tunnel = ports[0], ports[1]
        for sid in (1, 2):
            log = self._spawn(tmp, f"node{sid}", [
                "--config", str(config), "--db", pg_url, "--cert", pki["cert"],
                "--key", pki["key"], "--quic-library", "aioquic", "--quic-host", HOST,
                "--quic-port", "0", "--http-host", HOST, "--http-port", "0",
                "--ticket-file", str(tmp / f"tickets{sid}.sqlite"),
                "--server-id", str(sid), "--router", f"{HOST}:{tunnel}",
                "--cluster-key-file", key, "--nats-url", nats.url])
            log_wait(self.procs[f"node{sid}"], log, "backend ready")

    def _spawn(self, tmp: Path, name: str, args: list[str]) -> Path:
        log = tmp / f"{name}.log"
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "backend", *args], stdout=open(log, "ab"),
            stderr=subprocess.STDOUT, env=_env(), cwd=REPO, start_new_session=True)
        return log

    def kill(self, server_id: int) -> None:
        self.procs[f"node{server_id}"].kill()  # SIGKILL
        self.procs[f"node{server_id}"].wait(10)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.mark.parametrize("kind", ["reuseport", "router"])
async def test_stale_and_offline_once_per_vehicle_across_processes(
        kind, tmp_path, pki, pg_url, cluster_key):
    store = open_store(pg_url)
    await store.open()
    try:  # known before the processes start, as a fleet is
        tokens = {f"o{i}": await store.add_vehicle(f"o{i}") for i in range(VEHICLES)}
    finally:
        await store.close()
    config = tmp_path / "backend.toml"
    config.write_text(CONFIG)
    nats = NatsServer().start()
    agents: dict[str, AgentRig] = {}
    cluster = None

    def agent(v: str) -> AgentRig:
        return AgentRig(tmp_path / v, v, tokens[v], HOST, cluster.port, pki["ca"],
                        quic_library="aioquic").start()

    try:
        cluster = (_Reuseport(tmp_path, pki, pg_url, nats, config) if kind == "reuseport"
                   else _Routed(tmp_path, pki, pg_url, nats, config, cluster_key[0]))
        agents = {v: agent(v) for v in tokens}
        await until(lambda: all(_server_id(a) is not None for a in agents.values()), 30,
                    "all agents connected")
        since = wall_ms()
        # streaming for longer than the offline rule: no alert of either rule
        loop = asyncio.get_running_loop()
        end = loop.time() + OFFLINE_S + 2
        while loop.time() < end:
            for a in agents.values():
                await _add_now(a)
            await asyncio.sleep(0.5)
        await until(lambda: all(a.uplink.stats.readings_acked >= a.appended
                                for a in agents.values()), 30, "the stream acked")
        assert await _timed_alerts(pg_url, since) == {}, "connected and streaming: neither rule"

        # silent but connected: stale once per vehicle, no offline
        async def all_stale() -> bool:
            got = await _timed_alerts(pg_url, since)
            return all(("stale", "open") in got.get(v, ()) for v in tokens)

        deadline = loop.time() + 30
        while not await all_stale():
            assert loop.time() < deadline, await _timed_alerts(pg_url, since)
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # four more timer rounds of every process
        assert await _timed_alerts(pg_url, since) == {v: [("stale", "open")] for v in tokens}

        # the vehicles of one process disconnect, and it is killed before their offline rule
        victim = _server_id(agents["o0"])
        moved = [v for v, a in agents.items() if _server_id(a) == victim]
        stayed = [v for v in tokens if v not in moved]
        for v in moved:
            await agents.pop(v).stop()
        cluster.kill(victim)

        async def offline_taken_over() -> bool:
            got = await _timed_alerts(pg_url, since)
            return all(("offline", "open") in got.get(v, ()) for v in moved)

        deadline = loop.time() + 60
        while not await offline_taken_over():
            assert loop.time() < deadline, await _timed_alerts(pg_url, since)
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        got = await _timed_alerts(pg_url, since)
        for v in moved:
            assert sorted(got[v]) == [("offline", "open"), ("stale", "open")], (v, got)
        for v in stayed:
            assert got[v] == [("stale", "open")], (v, got)

        # they come back (the killed process is gone: necessarily another one) and stream
        for v in moved:
            agents[v] = agent(v)

        async def closed_again() -> bool:
            got = await _timed_alerts(pg_url, since)
            return all(sorted(got.get(v, ())) == [("offline", "closed"), ("stale", "closed")]
                       for v in moved)

        deadline = loop.time() + 60
        while not await closed_again():
            assert loop.time() < deadline, await _timed_alerts(pg_url, since)
            for v in moved:
                await _add_now(agents[v])
            await asyncio.sleep(0.5)
        for _ in range(4):  # four more rounds of every process, still streaming
            for v in moved:
                await _add_now(agents[v])
            await asyncio.sleep(0.5)
        got = await _timed_alerts(pg_url, since)
        for v in moved:
            assert sorted(got[v]) == [("offline", "closed"), ("stale", "closed")], (v, got)
        for v in stayed:
            assert got[v] == [("stale", "open")], (v, got)
    finally:
        for a in agents.values():
            await a.stop()
        if cluster is not None:
            cluster.stop()
        nats.close()
