"""Live fan-out survives a NATS node (docs/scaling.md §5, docs/operations.md): three
nats-servers joined by routes (tests/cluster/natsfixture.py `NatsCluster`), one network
namespace each; two gateway processes of the load tester, gateway 0 given only node 1's URL
(it learns the others from the cluster), gateway 1 the whole list; a subscriber on node 3.
Node 1 is killed mid-stream: every reading is still stored exactly once, and positions that
gateway 0's vehicles made after the kill reach the subscriber through another node.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from hil.netns import available
from loadtest.run import Options, run

from .natsfixture import NatsCluster
from .nslan import NsLan, in_netns

_ok, _why = available()
pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not _ok, reason=f"no network namespaces: {_why}")]

VEHICLES = 40
DURATION_S = 12.0
KILL_AT_S = 4.0
MEMBERS = {"nats1": [31], "nats2": [32], "nats3": [33], "app": [20]}


def test_nats_url_lists_a_clusters_servers():
    from backend.natsconn import NatsSettings, url_has_secret

    urls = "nats://10.0.0.5:4222, nats://10.0.0.6:4222,nats://10.0.0.7:4222"
    assert NatsSettings(urls).connect_options()["servers"] == [
        "nats://10.0.0.5:4222", "nats://10.0.0.6:4222", "nats://10.0.0.7:4222"]
    assert not url_has_secret(urls)
    assert url_has_secret("nats://10.0.0.5:4222,nats://u:pw@10.0.0.6:4222")  # any of them


class Subscriber:
    """Every position on fleet.pos.* as node 3 delivers it: vehicle → device times (ms)."""

    def __init__(self, url: str):
        self.url = url
        self.times: dict[str, list[int]] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()

    def main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        import nats

        nc = await nats.connect(self.url, connect_timeout=5)

        async def on(msg):
            body = json.loads(msg.data)
            self.times.setdefault(msg.subject.rsplit(".", 1)[1], []).append(body["time_ms"])

        await nc.subscribe("fleet.pos.*", cb=on)
        await nc.flush()
        self.ready.set()
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
        await nc.drain()


def test_nats_node_killed_mid_stream_fan_out_goes_on(tmp_path):
    lan = NsLan(f"n{threading.get_native_id() % 100000}").build(MEMBERS)
    nats_cluster = None
    sub_thread = None
    try:
        nats_cluster = NatsCluster(lan).start()
        sub = Subscriber(nats_cluster.url("nats3"))
        sub_thread = threading.Thread(target=in_netns, args=(lan.ns("app"), sub.main),
                                      daemon=True)
        sub_thread.start()
        assert sub.ready.wait(30), "subscriber on node 3"
        killed: list[int] = []

        def kill_node1() -> None:
            killed.append(time.time_ns() // 1_000_000)
            nats_cluster.kill("nats1")

        opts = Options(vehicles=VEHICLES, rate_hz=1.0, duration_s=DURATION_S, gateways=2,
                       gateway_nats=(nats_cluster.url("nats1"), nats_cluster.urls()),
                       log_dir=str(tmp_path))
        rep = in_netns(lan.ns("app"), run, opts, [(KILL_AT_S, kill_node1)])
        print("\n".join(rep.lines()))
        assert rep.connected == VEHICLES and rep.stored == rep.made > 0
        assert (rep.lost, rep.duplicated, rep.unexpected, rep.unacked) == (0, 0, 0, 0)
        # vehicle i talks to gateway i mod 2: gateway 0's lost their NATS server
        on_gateway0 = [v for v in sub.times if int(v[-5:]) % 2 == 0]
        assert len(on_gateway0) == VEHICLES // 2
        after = [v for v in on_gateway0 if max(sub.times[v]) > killed[0]]
        assert after == on_gateway0, "positions made after the kill, through another node"
    finally:
        if sub_thread is not None:
            sub.stop.set()
            sub_thread.join(10)
        if nats_cluster is not None:
            nats_cluster.stop()
        lan.teardown()
