"""Two gateway processes' alert engines on one store, each with its VehicleOwners
(backend/cluster/owners.py), on a given clock: the stale and offline rules run only in the
vehicle's owner; a vehicle that moves hands over (the new owner closes what the old one
opened); a dead owner's vehicles are adopted by the other after its membership expires, and
a process that lost a vehicle can no longer write its alerts. Both stores."""

from __future__ import annotations

from backend.alerts import AlertEngine, parse_rules
from backend.cluster.owners import VehicleOwners
from backend.store.base import AlertQuery
from geostream.clock import wall_ms
from tests.integration.alerts.helpers import V, pos

NOW = wall_ms() // 3_600_000 * 3_600_000
RULES = parse_rules({"stale": {"after_s": 300}, "offline": {"after_s": 600}})
TTL_S = 10.0


class Process:
    """One gateway process's engine and owners on the shared store, on the test's clock."""

    def __init__(self, store, name: str, clock: list[int], published: list):
        self.owners = VehicleOwners(store, node=name, ttl_s=TTL_S, clock=lambda: clock[0])
        self.engine = AlertEngine(store, RULES, lambda a: published.append((name, a)),
                                  owners=self.owners)
        self.clock = clock
        self.holding: set[str] = set()

    async def start(self) -> None:
        await self.renew()
        await self.engine.start(self.clock[0])

    async def renew(self) -> None:
        o = self.owners
        await o.store.renew_member(o.node, self.clock[0], o.ttl_ms)

    async def connect(self) -> None:
        """A connection registered, and its claim in the store (the gateway does not wait
        for it; here the order of the two processes' writes is the test's)."""
        self.holding.add(V)
        self.owners.connected(V)
        await self.owners.flush()

    async def disconnect(self) -> None:
        self.holding.discard(V)
        self.owners.disconnected(V)
        await self.owners.flush()

    async def tick(self) -> None:
        await self.engine.on_timer(self.clock[0], self.holding)


async def _timed(store) -> list[tuple[str, int, int | None, str]]:
    return sorted((a.rule, a.start_ms, a.end_ms, a.state)
                  for a in await store.list_alerts(AlertQuery(limit=100))
                  if a.rule in ("stale", "offline"))


async def test_one_owner_hand_over_and_takeover(any_store):
    s = any_store
    await s.add_vehicle(V)
    clock, published = [NOW], []
    a, b = Process(s, "host/1", clock, published), Process(s, "host/2", clock, published)
    await a.start()
    await b.start()

    async def at(t_s: float, *procs: Process) -> None:
        clock[0] = NOW + round(t_s * 1000)
        for p in procs:
            await p.renew()
        for p in procs:
            await p.tick()

    await a.connect()
    await s.write([pos(1, NOW / 1000, 50)], [])
    await a.engine.on_committed([pos(1, NOW / 1000, 50)], NOW)
    await at(0, a, b)
    await at(301, a, b)  # silent: stale, raised once, by its owner
    assert [(who, x["rule"], x["state"]) for who, x in published] == [("host/1", "stale", "open")]
    await at(650, a, b)  # connected to a: nobody calls it offline
    assert len(published) == 1

    # it moves to b and sends: b closes a's stale alert; a stops
    await a.disconnect()
    clock[0] = NOW + 660_000
    await b.connect()
    newer = pos(2, (NOW + 660_000) / 1000, 50)
    await s.write([newer], [])
    await b.engine.on_committed([newer], clock[0])
    await at(661, a, b)
    assert [(who, x["rule"], x["state"]) for who, x in published[1:]] == [
        ("host/2", "stale", "closed")]
    assert b.owners.stats["gained"] == 1 and a.owners.stats["lost"] == 1

    # b dies (no renewal, no release) with the vehicle connected; a adopts it after b's
    # membership expires, and calls it stale (from its newest reading) and offline (from
    # b's last renewal), once each
    await at(665, a)  # b's last renewal was at 661 s
    assert len(published) == 2
    await at(661 + TTL_S + 1, a)
    assert a.owners.stats["gained"] == 2
    await at(661 + 599, a)
    assert [(who, x["rule"], x["state"]) for who, x in published[2:]] == [
        ("host/1", "stale", "open")]
    await at(661 + 601, a)
    await at(661 + 700, a)
    assert [(who, x["rule"], x["state"]) for who, x in published[2:]] == [
        ("host/1", "stale", "open"), ("host/1", "offline", "open")]
    assert await _timed(s) == [("offline", NOW + 1_261_000, None, "open"),
                               ("stale", NOW + 300_000, NOW + 660_000, "closed"),
                               ("stale", NOW + 960_000, None, "open")]


async def test_a_process_that_lost_the_vehicle_cannot_write_its_alerts(any_store):
    s = any_store
    await s.add_vehicle(V)
    clock, published = [NOW], []
    a, b = Process(s, "host/1", clock, published), Process(s, "host/2", clock, published)
    await a.start()
    await b.start()
    await a.connect()
    await a.tick()  # a owns it: its sync claimed it
    from backend.alerts.evaluate import Episode

    offline = Episode("offline", V, NOW, None, "", None, None, None, {}, NOW)
    clock[0] = NOW + 1000
    await b.connect()  # a newer connection elsewhere
    assert await a.owners.save([offline], clock[0]) == []
    assert [x.vehicle_id for x, _ in await b.owners.save([offline], clock[0])] == [V]
    # a's own older connection does not take it back while b's is connected
    await a.owners._write([(V, True, NOW)])
    assert await s.owned_vehicles("host/1", clock[0]) == {}
    assert await s.owned_vehicles("host/2", clock[0]) == {V: (True, NOW + 1000)}
