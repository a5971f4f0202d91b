"""The live hub: topics, last-known positions, bounded subscriber queues."""

from __future__ import annotations

from backend.hub import ALL, HUB_CLIENT_QUEUE, Hub, Subscriber, position_feature, valid_topic


def feature(vehicle: str, t: int) -> dict:
    return position_feature(vehicle, t, 53.5, 9.9 + t / 1e6, 30.0, 90.0, t)


def test_feature_is_rfc7946_lon_lat_with_iso_time():
    f = position_feature("v", 1_700_000_000_123, 53.5, 9.9, None, None, 1)
    assert f["geometry"] == {"type": "Point", "coordinates": [9.9, 53.5]}
    assert f["properties"]["time"] == "2023-11-14T22:13:20.123Z"


def test_topics_route_updates_and_backfill_never_moves_a_vehicle_back():
    hub = Hub()
    everything, one = Subscriber(), Subscriber()
    for s in (everything, one):
        hub.add(s)
    hub.subscribe(everything, ALL)
    hub.subscribe(one, "vehicle:b")
    assert hub.position("a", 2000, feature("a", 2000))
    assert hub.position("b", 2000, feature("b", 2000))
    assert not hub.position("b", 1000, feature("b", 1000)), "older point must not publish"
    got_all = [m["feature"]["properties"]["vehicle"] for m in everything.drain() if "feature" in m]
    got_one = [m["feature"]["properties"]["seq"] for m in one.drain() if "feature" in m]
    assert got_all == ["a", "b"] and got_one == [2000]


def test_new_subscriber_first_gets_last_known_positions():
    hub = Hub()
    hub.seed("a", 5, feature("a", 5))
    hub.position("b", 7, feature("b", 7))
    s = Subscriber()
    hub.add(s)
    hub.subscribe(s, ALL)
    msgs = s.drain()
    assert msgs[0] == {"topic": ALL, "event": "subscribed"}
    assert [m["feature"]["properties"]["vehicle"] for m in msgs[1:]] == ["a", "b"]


def test_slow_subscriber_loses_oldest_not_server_memory():
    hub = Hub()
    s = Subscriber()
    hub.add(s)
    hub.subscribe(s, ALL)
    s.drain()
    for t in range(1, HUB_CLIENT_QUEUE + 51):
        hub.position("a", t, feature("a", t))
    msgs = s.drain()
    assert len(msgs) == HUB_CLIENT_QUEUE and s.dropped == 50
    assert msgs[-1]["feature"]["properties"]["seq"] == HUB_CLIENT_QUEUE + 50


def test_topic_validation():
    assert valid_topic(ALL) and valid_topic("vehicle:x") and valid_topic("alerts")
    assert not valid_topic("vehicle:") and not valid_topic(5) and not valid_topic("other")
