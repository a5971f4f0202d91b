"""The live hub's queue policy (sans-IO, fake clock): coalescing, alerts kept, bounded memory,
hopeless clients, topic authorisation, backfill never live."""

from __future__ import annotations

import datetime as dt
import json
import zlib

import backend.hub
from backend.hub import (
    ALERTS,
    ALL,
    HOPELESS_S,
    ISO_SECONDS_KEPT,
    MAX_PENDING_MESSAGES,
    Hub,
    Subscriber,
    iso_time,
    position_feature,
    valid_topic,
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def feature(vehicle: str, t: int) -> dict:
    return position_feature(vehicle, t, 53.5, 9.9 + t / 1e6, 30.0, 90.0, t)


def alert(n: int, vehicle: str = "a") -> dict:
    return {"id": n, "rule": "overspeed", "vehicle": vehicle, "state": "open"}


def hub_with(*subs: Subscriber, topics=(ALL, ALERTS)) -> tuple[Hub, Clock]:
    clock = Clock()
    hub = Hub(clock=clock)
    for s in subs:
        hub.add(s)
        for t in topics:
            hub.subscribe(s, t)
        s.drain(clock())
    return hub, clock


def test_feature_is_rfc7946_lon_lat_with_iso_time():
    f = position_feature("v", 1_700_000_000_123, 53.5, 9.9, None, None, 1)
    assert f["geometry"] == {"type": "Point", "coordinates": [9.9, 53.5]}
    assert f["properties"]["time"] == "2023-11-14T22:13:20.123Z"


def test_iso_time_names_each_millisecond_as_datetime_does_and_forgets_old_seconds():
    def by_datetime(ms: int) -> str:  # exact for these: whole microseconds, no float trouble
        when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    times = [0, 1, 999, 1000, -1, -999, -1000, -1001, 1_700_000_000_123,
             253_402_300_799_999, -62_135_596_800_000, 86_400_000 * 365 * 30 + 7]
    for ms in times + times:  # the second pass from the formatted seconds
        assert iso_time(ms) == by_datetime(ms), ms
    assert iso_time(253_402_300_800_000) is None  # year 10000
    assert iso_time(-62_135_596_800_001) is None  # before year 1
    assert iso_time(1_700_000_000_123.0) == "2023-11-14T22:13:20.123Z"  # not an int
    for second in range(ISO_SECONDS_KEPT + 10):
        iso_time(second * 1000)
    assert len(backend.hub._ISO_SECONDS) <= ISO_SECONDS_KEPT


def test_topics_route_updates_and_backfill_never_moves_a_vehicle_back():
    everything, one = Subscriber(), Subscriber()
    hub, _ = hub_with(everything)
    hub.add(one)
    hub.subscribe(one, "vehicle:b")
    one.drain()
    assert hub.position("a", 2000, feature("a", 2000))
    assert hub.position("b", 2000, feature("b", 2000))
    assert not hub.position("b", 1000, feature("b", 1000)), "older point must not publish"
    got_all = [m["feature"]["properties"]["vehicle"] for m in everything.drain()]
    got_one = [m["feature"]["properties"]["seq"] for m in one.drain()]
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


def test_positions_coalesce_per_vehicle_latest_wins():
    slow = Subscriber()
    hub, _ = hub_with(slow, topics=(ALL,))
    for t in range(1, 1001):
        for v in "abcdefghij":
            hub.position(v, t, feature(v, t))
    msgs = slow.drain()
    assert [m["feature"]["properties"]["vehicle"] for m in msgs] == list("abcdefghij")
    assert {m["feature"]["properties"]["seq"] for m in msgs} == {1000}
    assert slow.coalesced == 9990 and slow.dropped == 0 and hub.coalesced == 9990


def test_alerts_are_never_coalesced_and_keep_their_order():
    slow = Subscriber()
    hub, _ = hub_with(slow)
    for n in range(50):
        hub.position("a", n + 1, feature("a", n + 1))
        hub.publish_alert(alert(n))
    msgs = slow.drain()
    alerts = [m["alert"]["id"] for m in msgs if "alert" in m and m["topic"] == ALERTS]
    positions = [m["feature"]["properties"]["seq"] for m in msgs if "feature" in m]
    assert alerts == list(range(50)) and positions == [50]


def test_too_many_pending_alerts_make_the_client_hopeless_not_silently_short():
    slow = Subscriber()
    hub, _ = hub_with(slow, topics=(ALERTS,))
    for n in range(MAX_PENDING_MESSAGES):
        hub.publish_alert(alert(n))
    assert slow.reason is None and len(slow) == MAX_PENDING_MESSAGES
    hub.publish_alert(alert(MAX_PENDING_MESSAGES))
    assert slow.hopeless.is_set() and "alerts" in slow.reason
    assert len(slow) == 0  # its memory is released at once
    hub.publish_alert(alert(0))
    assert len(slow) == 0
    hub.remove(slow)
    assert hub.disconnected == 1 and hub.stats()["subscribers"] == 0


def test_a_client_that_takes_nothing_for_hopeless_s_is_given_up():
    slow, fast = Subscriber(), Subscriber()
    hub, clock = hub_with(slow, fast)
    for step in range(int(HOPELESS_S) * 2):
        clock.t = float(step)
        hub.position("a", step + 1, feature("a", step + 1))
        assert len(fast.drain(clock())) == 1  # the fast one keeps up
    assert slow.reason is not None and "nothing taken" in slow.reason
    assert fast.reason is None and not fast.check(clock.t + HOPELESS_S - 1)
    # quiet but empty is not slow: no updates waited
    idle = Subscriber()
    hub.add(idle)
    assert not idle.check(clock.t + 10 * HOPELESS_S)


def test_memory_is_bounded_by_the_position_cap():
    slow = Subscriber(max_positions=3)
    hub, _ = hub_with(slow, topics=(ALL,))
    for v in "abcde":
        hub.position(v, 1, feature(v, 1))
    msgs = slow.drain()
    assert [m["feature"]["properties"]["vehicle"] for m in msgs] == ["c", "d", "e"]
    assert slow.dropped == 2 and hub.dropped == 2


def test_subscribers_receive_only_vehicles_they_may_see():
    mine = Subscriber(may_see=lambda v: v == "a")
    hub, clock = hub_with(mine)
    hub.position("a", 1, feature("a", 1))
    hub.position("b", 1, feature("b", 1))
    hub.publish_alert(alert(1, "b"))
    hub.publish_alert(alert(2, "a"))
    msgs = mine.drain()
    assert [m["feature"]["properties"]["vehicle"] for m in msgs if "feature" in m] == ["a"]
    assert [m["alert"]["id"] for m in msgs if "alert" in m] == [2]
    assert not hub.subscribe(mine, "vehicle:b")
    assert mine.drain() == [{"error": "unknown topic 'vehicle:b'"}]
    assert "vehicle:b" not in mine.topics
    # the snapshot on subscribe is filtered too
    late = Subscriber(may_see=lambda v: v == "b")
    hub.add(late)
    hub.subscribe(late, ALL)
    assert [m["feature"]["properties"]["vehicle"] for m in late.drain()[1:]] == ["b"]


def test_topic_validation():
    assert valid_topic(ALL) and valid_topic("vehicle:x") and valid_topic("alerts")
    assert not valid_topic("vehicle:") and not valid_topic(5) and not valid_topic("other")


def test_refilter_drops_what_is_no_longer_visible_and_says_so():
    hub = Hub(clock=Clock())
    sub = hub.new_subscriber()
    for topic in (ALL, ALERTS, "vehicle:b"):
        hub.subscribe(sub, topic)
    sub.drain()
    for v in ("a", "b"):
        hub.position(v, 1, position_feature(v, 1, 50.0, 8.0, 10.0, 0.0, 1))
        hub.publish_alert({"id": v, "vehicle": v, "rule": "overspeed"})
    assert len(sub) == 6  # a and its alert; b and its alert, each on two topics
    sub.refilter(lambda v: v == "a", hub.clock())
    got = sub.drain()
    assert [m.get("feature", {}).get("properties", {}).get("vehicle") or
            m.get("alert", {}).get("vehicle") or m.get("event") for m in got] == [
        "a", "a", "unsubscribed"]
    assert sub.topics == {ALL, ALERTS}
    hub.position("b", 2, position_feature("b", 2, 50.0, 8.0, 10.0, 0.0, 2))
    assert len(sub) == 0
    # the coalescing bound still counts right after removals
    hub.position("a", 2, position_feature("a", 2, 50.0, 8.0, 10.0, 0.0, 2))
    assert sub._positions == 1 and len(sub) == 1


# --- batch frames (subscribe with batch=True; docs/protocol.md §9) ----------------------------

def batched(hub: Hub, clock: Clock, *subs: Subscriber, topic: str = ALL) -> None:
    for s in subs:
        hub.add(s)
        assert hub.subscribe(s, topic, batch=True)
        hub.subscribe(s, ALERTS, batch=True)  # alerts are never batched, whatever asked
        s.drain(clock())


def vehicles_of(frame: dict) -> list[str]:
    return [f["properties"]["vehicle"] for f in frame["features"]]


def test_a_tick_sends_one_frame_with_every_changed_vehicle_latest_wins():
    clock = Clock()
    hub = Hub(clock=clock)
    admin1, admin2 = Subscriber(view="all"), Subscriber(view="all")
    only_ab = Subscriber(may_see={"a", "b"}.__contains__, view="ab")
    batched(hub, clock, admin1, admin2, only_ab)
    names = [f"v{i}" for i in range(50)] + ["a", "b"]
    for t in (1000, 2000):  # two updates of each vehicle within one tick
        for v in names:
            assert hub.position(v, t, feature(v, t))
    assert all(len(s) == 0 for s in (admin1, admin2, only_ab)), "nothing before the tick"
    assert hub.flush() == 2  # one frame per view, not per client
    (frame1,), (frame2,), (frame_ab,) = admin1.drain(), admin2.drain(), only_ab.drain()
    assert frame1 is frame2, "clients of one view share the frame (encoded once)"
    assert frame1["topic"] == ALL and frame1["type"] == "FeatureCollection"
    assert vehicles_of(frame1) == names
    assert {f["properties"]["seq"] for f in frame1["features"]} == {2000}
    assert vehicles_of(frame_ab) == ["a", "b"], "never a vehicle outside the groups"
    assert hub.flush() == 0 and len(admin1) == 0, "nothing changed: no frame"


def test_batched_snapshot_is_one_frame_and_alerts_stay_single_messages():
    clock = Clock()
    hub = Hub(clock=clock)
    hub.seed("a", 1000, feature("a", 1000))
    hub.seed("z", 1000, feature("z", 1000))
    sub = Subscriber(may_see={"a"}.__contains__)
    hub.add(sub)
    hub.subscribe(sub, ALL, batch=True)
    hub.subscribe(sub, ALERTS, batch=True)
    msgs = sub.drain()
    assert msgs[0] == {"topic": ALL, "event": "subscribed"}
    assert vehicles_of(msgs[1]) == ["a"] and msgs[2] == {"topic": ALERTS, "event": "subscribed"}
    hub.publish_alert(alert(1))
    hub.publish_alert(alert(2))
    assert [m["alert"]["id"] for m in sub.drain()] == [1, 2]


def test_a_slow_batched_client_gets_frames_merged_latest_per_vehicle_and_bounded():
    clock = Clock()
    hub = Hub(clock=clock)
    fast, slow = Subscriber(view="all"), Subscriber(view="all", max_positions=3)
    batched(hub, clock, fast, slow)
    for t, vs in ((1000, "abc"), (2000, "bd"), (3000, "e")):
        for v in vs:
            hub.position(v, t, feature(v, t))
        hub.flush()
        assert len(fast.drain()) == 1
    (frame,) = slow.drain()
    # a, b, c, then b again and d, then e: latest per vehicle, the oldest (a, c) dropped
    assert vehicles_of(frame) == ["b", "d", "e"]
    assert [f["properties"]["seq"] for f in frame["features"]] == [2000, 2000, 3000]
    assert slow.coalesced == 1 and slow.dropped == 2


def test_a_batched_client_that_takes_nothing_is_still_given_up():
    clock = Clock()
    hub = Hub(clock=clock)
    sub = Subscriber()
    batched(hub, clock, sub)
    hub.position("a", 1000, feature("a", 1000))
    hub.flush()
    clock.t = HOPELESS_S
    hub.position("a", 2000, feature("a", 2000))
    hub.flush()
    assert sub.reason is not None and sub.hopeless.is_set() and len(sub) == 0


def test_refilter_removes_hidden_vehicles_from_a_queued_frame_and_changes_the_view():
    clock = Clock()
    hub = Hub(clock=clock)
    sub, other = Subscriber(view="all"), Subscriber(view="all")
    batched(hub, clock, sub, other)
    for v in "abc":
        hub.position(v, 1000, feature(v, 1000))
    hub.flush()
    sub.refilter({"b"}.__contains__, clock(), view="b")
    assert vehicles_of(sub.drain()[0]) == ["b"]
    assert vehicles_of(other.drain()[0]) == list("abc")
    hub.position("a", 2000, feature("a", 2000))
    hub.position("b", 2000, feature("b", 2000))
    hub.flush()
    assert vehicles_of(sub.drain()[0]) == ["b"] and vehicles_of(other.drain()[0]) == ["a", "b"]


def test_deflated_frames_are_compressed_once_per_view_and_inflate_to_the_frame():
    """`deflate`: a batched topic's frames go as raw DEFLATE bytes, the same bytes object for
    every client of the view; alerts, events and unbatched topics stay JSON text."""
    clock = Clock()
    hub = Hub(clock=clock)
    d1, d2, plain = Subscriber(view="all"), Subscriber(view="all"), Subscriber(view="all")
    for s, deflate in ((d1, True), (d2, True), (plain, False)):
        hub.add(s)
        hub.subscribe(s, ALL, batch=True, deflate=deflate)
        hub.subscribe(s, ALERTS, deflate=True)  # not batched: deflate does not apply
        assert all(isinstance(s.wire(m), str) for m in s.drain(clock()))
    for v in "abc":
        hub.position(v, 1000, feature(v, 1000))
    hub.publish_alert(alert(7))
    hub.flush()
    (w1_frame, w1_alert) = [d1.wire(m) for m in d1.drain()][::-1]  # the alert came first
    (w2_frame, _) = [d2.wire(m) for m in d2.drain()][::-1]
    (p_frame, _) = [plain.wire(m) for m in plain.drain()][::-1]
    assert isinstance(w1_frame, bytes) and w1_frame is w2_frame, "compressed once"
    frame = json.loads(zlib.decompress(w1_frame, -15))  # a complete raw DEFLATE stream
    assert frame == json.loads(p_frame) and vehicles_of(frame) == ["a", "b", "c"]
    assert json.loads(w1_alert)["alert"]["id"] == 7
    hub.unsubscribe(d1, ALL)
    hub.subscribe(d1, ALL, batch=True)  # resubscribed without deflate: text again
    d1.drain()
    hub.position("a", 2000, feature("a", 2000))
    hub.flush()
    (m,) = d1.drain()
    assert isinstance(d1.wire(m), str)


def test_a_drivers_topic_reaches_only_its_app_and_is_never_coalesced():
    from backend.hub import driver_topic, vehicle_topic

    app, other, panel, stranger = (Subscriber(), Subscriber(),
                                   Subscriber(may_see=lambda v: v == "a"),
                                   Subscriber(may_see=lambda v: v == "b"))
    hub, _ = hub_with(app, other, panel, stranger, topics=())
    app.topics.add(driver_topic("d1"))
    other.topics.add(driver_topic("d2"))
    for s in (panel, stranger):
        hub.subscribe(s, vehicle_topic("a" if s is panel else "b"))
        s.drain()
    for n in range(3):
        hub.publish_driver("d1", "message", {"seq": n})
        hub.publish_vehicle_event("a", "message", {"seq": n})
    assert [m["message"]["seq"] for m in app.drain()] == [0, 1, 2]
    assert [m["message"]["seq"] for m in panel.drain()] == [0, 1, 2]
    assert other.drain() == [] and stranger.drain() == []
    assert not valid_topic(driver_topic("d1"))  # no client subscribes to it itself
    # a route given to d1 (any route, any vehicle) reaches d1's app
    hub.publish_dispatch("route", {"id": "r9", "driver_id": "d1"}, "z", "r9")
    assert [m["route"]["id"] for m in app.drain()] == ["r9"] and other.drain() == []


def test_a_queued_proposal_goes_when_its_vehicles_are_no_longer_all_visible():
    hub = Hub(clock=Clock())
    sub = hub.new_subscriber()
    hub.subscribe(sub, "dispatch")
    sub.drain()
    for pid, vehicles in (("p-a", ["a"]), ("p-ab", ["a", "b"])):
        hub.publish_dispatch("proposal", {"id": pid, "vehicles": vehicles}, None)
    assert len(sub) == 2
    sub.refilter(lambda v: v == "a", hub.clock())
    assert [m["proposal"]["id"] for m in sub.drain()] == ["p-a"]


def _row(vehicle: str, t: int):
    from backend.store.rows import made
    return made(vehicle, 1, t, t, "pos", 53.5, 9.9 + t / 1e6, None, 30.0, 90.0, 1, 9, None,
                None, t)


def test_a_row_without_subscribers_is_kept_and_its_feature_made_when_asked():
    hub = Hub(clock=Clock())
    assert hub.position_row(_row("v", 2000)) and not hub.position_row(_row("v", 1000))
    assert hub.last["v"][0] == 2000 and hub.published == 1
    assert hub.last_feature("v") == feature("v", 2000)
    assert hub.last_feature("w") is None
    sub = Subscriber()
    hub.add(sub)
    hub.subscribe(sub, ALL)  # the snapshot: the same feature as a published one
    assert sub.drain(0)[-1] == {"topic": ALL, "feature": feature("v", 2000)}


def test_a_row_with_a_subscriber_is_published_as_its_feature():
    sub = Subscriber()
    hub, clock = hub_with(sub, topics=(ALL,))
    assert hub.takes_positions
    assert hub.position_row(_row("v", 3000)) and not hub.position_row(_row("v", 3000))
    assert sub.drain(clock()) == [{"topic": ALL, "feature": feature("v", 3000)}]
    assert hub.last["v"] == (3000, feature("v", 3000))
