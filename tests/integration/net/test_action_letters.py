"""Dead letters of vehicle actions (docs/operations.md "Dead letters of vehicle actions") on
the wire: the real agent uplink and journal, the real gateway with the real applier, on both
stores. An action the backend's code always fails on is sent again DEAD_AFTER_FAILURES times,
then set aside and acknowledged, so the vehicle's later readings are stored and other vehicles
never notice; a failure of the database is retried however often and never set aside; a
replay once the code is fixed applies the action exactly once."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.readings import Action, Position
from backend.dispatch.codec import route_from_dict
from backend.driver import letters
from backend.driver.applier import ActionApplier
from backend.metrics import FleetCollector
from backend.vehicle_actions import VehicleActions
from geostream.clock import wall_ms
from tests.integration.net.rig import AgentRig, GatewayRig, until

H = 3_600_000


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def rig(request, tmp_path, pki):
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    gw = await GatewayRig(tmp_path, pki, db_url=url).start()
    now = wall_ms()
    for n in (1, 2):  # driver dN drives dl-N now
        await gw.store.put_dispatch_route(route_from_dict({
            "vehicle_id": f"dl-{n}", "shift": {"start_ms": now - H, "end_ms": now + 8 * H},
            "start_depot": "dep", "stops": [], "status": "dispatched",
            "driver_id": f"d{n}"}, f"r{n}"), None, now)
    gw.actions = VehicleActions(ActionApplier(gw.store))
    gw.gateway.driver_actions = gw.actions
    yield gw
    await gw.stop()


def registry(rig) -> CollectorRegistry:
    """The backend's `/metrics` collector over this gateway."""
    reg = CollectorRegistry()
    reg.register(FleetCollector(rig.gateway, rig.hub))
    return reg


def message(device: str, n: int) -> dict:
    return {"key": f"{device}:{n:04d}", "device_id": device, "device_seq": n,
            "kind": "message", "text": f"message {n}"}


async def agent_for(rig, tmp_path, pki, vehicle: str) -> AgentRig:
    token = await rig.provision(vehicle)
    return AgentRig(tmp_path / vehicle, vehicle, token, rig.host, rig.port, pki["ca"]).start()


async def drained(agent: AgentRig, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await agent.pending():
        assert loop.time() < deadline, f"{what}: never acknowledged"
        await asyncio.sleep(0.05)


async def test_an_action_the_code_always_fails_on_is_set_aside_then_replayed_once(
        rig, tmp_path, pki):
    bad = message("tablet-0001", 3)["key"]  # the device's last: applied in order
    applier = rig.actions.applier
    real = applier.apply_from_vehicle

    async def with_a_bug(vehicle, action, now_ms, taken_ms=None):
        if action.key == bad:  # a bug on exactly this action, every time
            raise KeyError("pod")
        return await real(vehicle, action, now_ms, taken_ms)

    applier.apply_from_vehicle = with_a_bug
    t0 = wall_ms() - 60_000  # taken during the shift
    one = await agent_for(rig, tmp_path, pki, "dl-1")
    two = await agent_for(rig, tmp_path, pki, "dl-2")
    try:
        await one.journal.append(
            [Action(t0 + i, message("tablet-0001", i)) for i in (1, 2, 3)]
            + [Position(t0 + 1000 * i, 60.0 + i * 1e-5, 24.0) for i in range(1, 21)])
        one.uplink.notify()
        # halfway, the gateway's applier is made anew (a restart): the count is the store's
        await until(lambda: rig.actions.failed >= 2, 30, "two failures")
        counted = rig.actions.failed
        rig.actions = VehicleActions(applier)
        rig.gateway.driver_actions = rig.actions
        await two.journal.append([Action(t0 + i, message("tablet-0002", i)) for i in (1, 2)]
                                 + [Position(t0 + 1000 * i, 61.0, 25.0) for i in range(1, 6)])
        two.uplink.notify()
        await drained(one, "dl-1's journal")
        await drained(two, "dl-2's journal")
        assert counted + rig.actions.failed == letters.DEAD_AFTER_FAILURES
        scraped = {s.name: s.value for fam in text_string_to_metric_families(
            generate_latest(registry(rig)).decode()) for s in fam.samples}
        assert scraped["fleet_action_dead_letters_total"] == 1
        assert scraped["fleet_action_failures_total"] == rig.actions.failed
        [letter] = await rig.store.action_letters("dead")
        assert (letter["vehicle_id"], letter["key"], letter["kind"]) == ("dl-1", bad, "message")
        assert letter["failures"] == letters.DEAD_AFTER_FAILURES
        assert letter["error"].startswith("KeyError: 'pod' [at test_action_letters.py:")
        assert one.uplink.stats.connects >= letters.DEAD_AFTER_FAILURES, "sent again each time"
        assert two.uplink.stats.connects == 1, "the other vehicle never noticed"
        # everything else of dl-1 is stored and applied, the failing one not
        assert await rig.store.count_readings("dl-1") == 23
        assert await rig.store.count_readings("dl-2") == 7
        for key in ("tablet-0001:0001", "tablet-0001:0002", "tablet-0002:0001",
                    "tablet-0002:0002"):
            assert (await rig.store.driver_action(key))["outcome"] == "applied", key
        assert await rig.store.driver_action(bad) is None
        # the code is fixed: a replay applies it once; a second replay does nothing
        applier.apply_from_vehicle = real
        after = await rig.actions.replay("dl-1", letter["epoch"], letter["seq"], wall_ms())
        assert (after["state"], after["outcome"]) == ("replayed", "applied")
        assert (await rig.store.driver_action(bad))["outcome"] == "applied"
        again = await rig.actions.replay("dl-1", letter["epoch"], letter["seq"], wall_ms())
        assert again == after
        texts = [m["text"] for m in await rig.store.driver_messages("d1")]
        assert sorted(texts) == ["message 1", "message 2", "message 3"]
    finally:
        await one.stop()
        await two.stop()


async def test_a_failing_database_is_retried_and_never_set_aside(rig, tmp_path, pki):
    applier = rig.actions.applier
    real = applier.apply_from_vehicle
    failures = [letters.DEAD_AFTER_FAILURES + 2]  # more than a bug would get

    async def database_away(vehicle, action, now_ms, taken_ms=None):
        if failures[0]:
            failures[0] -= 1
            raise ConnectionRefusedError(111, "connection refused")  # the store's driver says
        return await real(vehicle, action, now_ms, taken_ms)

    applier.apply_from_vehicle = database_away
    t0 = wall_ms() - 60_000
    one = await agent_for(rig, tmp_path, pki, "dl-1")
    try:
        await one.journal.append([Action(t0, message("tablet-0001", 1)),
                                  Position(t0 + 1000, 60.0, 24.0)])
        one.uplink.notify()
        await drained(one, "dl-1's journal")
        assert failures == [0]
        assert one.uplink.stats.connects >= letters.DEAD_AFTER_FAILURES + 3
        assert await rig.store.action_letters() == []
        assert rig.actions.failed == 0
        assert (await rig.store.driver_action("tablet-0001:0001"))["outcome"] == "applied"
        assert await rig.store.count_readings("dl-1") == 2
    finally:
        await one.stop()
