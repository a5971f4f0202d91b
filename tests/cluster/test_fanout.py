"""Live fan-out between nodes through a real nats-server (docs/scaling.md §5)."""

from __future__ import annotations

import pytest

from backend.fanout import NatsFanout, subject, vehicle_of
from backend.hub import Hub, position_feature
from tests.net.rig import until

from .natsfixture import NatsServer


@pytest.fixture
def nats_server():
    server = NatsServer().start()
    yield server
    server.close()


def _feature(vehicle: str, t: int) -> dict:
    return position_feature(vehicle, t, 52.0, 4.0, 50.0, 90.0, t)


def test_subjects_keep_dotted_vehicle_ids():
    name = subject("fleet.pos.", "bus.12-a")
    assert name == "fleet.pos.bus~12-a" and name.count(".") == 2
    assert vehicle_of(name) == "bus.12-a"


async def test_gateway_node_positions_and_alerts_reach_every_hub_node(nats_server):
    gateway_hub, hub_node = Hub(), Hub()
    gw = await NatsFanout(nats_server.url, gateway_hub).start()
    node = await NatsFanout(nats_server.url, hub_node).start()
    sub = hub_node.new_subscriber()
    hub_node.add(sub)
    assert hub_node.subscribe(sub, "alerts")
    try:
        for t in (1000, 2000, 1500):  # the late 1500 is history, not live movement
            assert gw.position("bus.12", t, _feature("bus.12", t))
        await until(lambda: node.stats["received"] >= 3, 30, "positions through NATS")
        assert hub_node.last["bus.12"][0] == 2000
        assert gateway_hub.last["bus.12"][0] == 2000, "the gateway node's own hub too"
        gw.publish_alert({"vehicle": "bus.12", "rule": "speeding", "state": "open"})
        await until(lambda: any("alert" in m for m in sub.drain()), 30, "the alert")
        assert all(0 <= ms < 10_000 for ms in node.latencies_ms)
    finally:
        await gw.stop()
        await node.stop()


async def test_nats_restart_fan_out_resumes(nats_server):
    gateway_hub, hub_node = Hub(), Hub()
    gw = await NatsFanout(nats_server.url, gateway_hub).start()
    node = await NatsFanout(nats_server.url, hub_node).start()
    try:
        gw.position("v1", 1000, _feature("v1", 1000))
        await until(lambda: "v1" in hub_node.last, 30, "first position")
        nats_server.kill()
        gw.position("v1", 2000, _feature("v1", 2000))  # during the outage: may be lost
        nats_server.start()
        await until(lambda: gw.stats["reconnects"] >= 1 and node.stats["reconnects"] >= 1, 20,
                    "both clients reconnected")
        t = 3000
        for t in range(3000, 3000 + 50 * 100, 100):  # bounded: 50 tries, 0.2 s apart
            gw.position("v1", t, _feature("v1", t))
            try:
                await until(lambda t=t: hub_node.last["v1"][0] >= t, 0.2, "a new position")
                break
            except AssertionError:
                continue
        assert hub_node.last["v1"][0] >= 3000, "fan-out resumed after the restart"
    finally:
        await gw.stop()
        await node.stop()
