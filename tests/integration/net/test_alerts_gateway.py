"""Alerts through the real gateway (aioquic on loopback): a batch's alert is stored and pushed
after its ack; the same batch again (a lost ack) and the backfill before it add no alert."""

from backend.alerts import AlertEngine, parse_rules
from backend.hub import ALERTS, Subscriber, vehicle_topic
from backend.store.base import AlertQuery
from geostream.messages import Ack, Batch, Welcome
from tests.integration.net.rig import RawClient, until

T0 = 1_790_000_000_000


def positions(first_seq: int, seconds: range, speed: float) -> tuple[dict, ...]:
    return tuple({"q": first_seq + i, "ts": T0 + 1000 * s, "k": "pos", "lat": 53.5, "lon": 9.9,
                  "spd": speed} for i, s in enumerate(seconds))


async def test_batch_alert_is_stored_pushed_and_not_repeated(gw):
    engine = AlertEngine(gw.store, parse_rules({}), gw.hub.publish_alert)
    await engine.start(T0)
    gw.gateway.alerts = engine
    sub = Subscriber()
    gw.hub.add(sub)
    gw.hub.subscribe(sub, ALERTS)
    gw.hub.subscribe(sub, vehicle_topic("truck-9"))
    sub.drain()
    token = await gw.provision("truck-9")
    client = await RawClient(gw).connect()
    try:
        assert isinstance(await client.hello("truck-9", token, epoch=7), Welcome)
        live = Batch(epoch=7, readings=positions(100, range(100, 121), 120.0))  # 20 s at 120
        client.send(live)
        assert isinstance(await client.next_message(Ack), Ack)
        await until(lambda: sum("alert" in m for m in sub.queue) >= 2, 10, "the pushes")
        pushed = [m for m in sub.drain() if "alert" in m]  # positions go there too
        assert {(m["topic"], m["alert"]["rule"], m["alert"]["start_ms"], m["alert"]["state"])
                for m in pushed} == {(t, "overspeed", T0 + 100_000, "open")
                                     for t in (ALERTS, vehicle_topic("truck-9"))}
        client.send(live)  # re-sent after a lost ack
        backlog = Batch(epoch=7, readings=positions(1, range(0, 99), 120.0))  # the same episode
        client.send(backlog)
        await client.next_message(Ack)
        await client.next_message(Ack)
        await until(lambda: not engine._pending and not any(
            lock.locked() for lock in engine._locks.values()), 10, "the evaluations")
    finally:
        client.close()
    alerts = await gw.store.list_alerts(AlertQuery())
    # one episode, started with the backlog's first reading, still open
    assert [(a.rule, a.start_ms, a.end_ms, a.peak) for a in alerts] == [
        ("overspeed", T0, None, 120.0)]
    assert engine.stats["alerts_opened"] == {"overspeed": 1}
