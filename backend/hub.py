"""Live hub: topics, per-subscriber queues, last-known positions (sans-IO; docs/protocol.md §9).

Queue policy, per subscriber:
- positions coalesce by (topic, vehicle): a queued position is replaced by a newer one, so a
  slow client gets the latest of each vehicle, never a backlog of stale ones;
- alerts and other messages are never coalesced or dropped: they queue in order, and a client
  that lets `MAX_PENDING_MESSAGES` of them pile up, or takes nothing for `HOPELESS_S`, is
  marked hopeless with a reason; the WebSocket edge (web.py) then closes it with that reason;
- memory per client is bounded: at most `MAX_POSITION_KEYS` coalesced positions (beyond, the
  oldest is dropped and counted; the vehicle's next update brings it back) plus the pending
  messages above;
- a subscriber only receives vehicles its `may_see` admits (the principal's groups);
- batched subscriptions (`subscribe(..., batch=True)`) get no message per position: `flush`
  (every `TICK_S`, from the edge) sends one FeatureCollection frame per (topic, view) with the
  latest position of every vehicle changed since the last flush, encoded once for all clients
  of that view; a client still holding an undelivered frame gets the two merged (latest per
  vehicle, at most `max_positions` features), so a slow client still gets no backlog.
Time is passed in (`now`, monotonic seconds) or read from the hub's injectable clock.
Over ~300 lines: one job (who gets which position, and how), split it would spread the queue
bounds over two modules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import json
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

ALL = "live_updates:all"
ALERTS = "alerts"
# Dispatch changes (docs/dispatch.md): every job and route change a client may see, and one
# route's changes (route:<id>); events like alerts, never coalesced or batched.
DISPATCH = "dispatch"
ROUTE_PREFIX = "route:"
# One driver's app (docs/driver.md): its route's changes, its actions' outcomes, messages to
# it. Subscribed by the server for the driver's own socket only (never by a client request).
DRIVER_PREFIX = "driver:"
# Coalesced positions one client may hold: a whole fleet view of 16,384 vehicles per topic
# (bench/bench_webapp.py: at 4096 a slow client of a 10,000-vehicle fleet dropped positions
# instead of coalescing them); ~2.5 MB per client at most (key and reference per entry).
MAX_POSITION_KEYS = 16_384
# Alerts and replies waiting for one client: a storm's worth; beyond it the client is too far
# behind to be told everything, so it is disconnected rather than silently shorn of alerts.
MAX_PENDING_MESSAGES = 1024
# A client that took nothing for this long while updates waited (a sleeping laptop, a dead
# link the TCP stack has not noticed) is disconnected; it resubscribes and gets the snapshot.
HOPELESS_S = 30.0
# Batch frames per second: one frame per tick adds at most 100 ms (50 ms on average) to a
# position's latency, leaving more than half of the 250 ms goal for sending and parsing, and
# turns 10,000 vehicles × 100 clients from 1,000,000 WebSocket messages/s into 1,000 frames/s.
TICK_S = 0.1
# zlib level of deflated batch frames: level 1 compresses a 1,000-position frame (218 KB of
# JSON) 5.4× in ~9 ms; level 6 gains 12 % in size for twice the time, paid 10 times a second
# per view.
FRAME_DEFLATE_LEVEL = 1
_unique = itertools.count()


# A subscriber's queue keys, one Python type per kind (isinstance tells them apart; no tag to
# compare). Plain builtins, not NamedTuples or dataclasses: a key is made per position and
# subscriber, the hub's hot path, and a NamedTuple's construction made `put` ~2× slower.
PositionKey = tuple[str | None, str]  # (topic, vehicle): coalesces with the next one of both
FrameKey = str  # the topic of a batch frame, merged with the next one of that topic
MessageKey = int  # any other message (alerts, events): queued on its own, never coalesced
QueueKey = PositionKey | FrameKey | MessageKey


class Message(dict):
    """One published message, shared by every subscriber it is queued for: encoded to JSON
    once, not once per client (bench/bench_webapp.py: with 100 clients the per-client
    `json.dumps` was most of the hub's send cost)."""

    @functools.cached_property
    def text(self) -> str:
        return json.dumps(self, separators=(",", ":"))

    @functools.cached_property
    def deflated(self) -> bytes:
        """The JSON text as one complete raw DEFLATE stream (RFC 1951), compressed once for
        every client that takes it (a browser inflates it with `DecompressionStream`)."""
        c = zlib.compressobj(FRAME_DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        return c.compress(self.text.encode()) + c.flush()


def encode(message: dict) -> str:
    """The JSON text of a queued message (a shared `Message` is encoded only once)."""
    if isinstance(message, Message):
        return message.text
    return json.dumps(message, separators=(",", ":"))


def vehicle_topic(vehicle_id: str) -> str:
    return f"vehicle:{vehicle_id}"


def route_topic(route_id: str) -> str:
    return f"{ROUTE_PREFIX}{route_id}"


def valid_topic(topic: Any) -> bool:
    return isinstance(topic, str) and (
        topic in (ALL, ALERTS, DISPATCH)
        or (topic.startswith("vehicle:") and 8 < len(topic) <= 72)
        or (topic.startswith(ROUTE_PREFIX) and 6 < len(topic) <= 70)
    )


def driver_topic(driver_id: str) -> str:
    return f"{DRIVER_PREFIX}{driver_id}"


def _event_topic(topic: str) -> bool:
    """Topics of events (never positions): not batched, not streamed positions."""
    return (topic in (ALERTS, DISPATCH) or topic.startswith(ROUTE_PREFIX)
            or topic.startswith(DRIVER_PREFIX))


def iso_time(time_ms: int) -> str | None:
    """ISO 8601 UTC with milliseconds (`2026-12-06T09:30:00.000Z`); None for a time no
    ISO 8601 date of four-digit years can name (before year 1 or after 9999, e.g. a reading
    stored before the gateway checked the time window). Each distinct second is formatted
    once (`_ISO_SECONDS`): the gateway names every committed position's time, and a fleet's
    positions of one tick share a few seconds."""
    if type(time_ms) is not int:
        return _iso_time(time_ms)
    second, ms = divmod(time_ms, 1000)
    prefix = _ISO_SECONDS.get(second)
    if prefix is None:
        try:
            when = dt.datetime.fromtimestamp(second, dt.UTC)
        except (OverflowError, ValueError, OSError):
            return None
        if len(_ISO_SECONDS) >= ISO_SECONDS_KEPT:
            _ISO_SECONDS.clear()
        prefix = _ISO_SECONDS[second] = when.isoformat(timespec="seconds")[:-6]  # no +00:00
    return f"{prefix}.{ms:03d}Z"


# Seconds `iso_time` keeps formatted: a live fleet's positions fall within a few seconds of
# now; a history answer walks through many, each formatted once per pass of this many.
ISO_SECONDS_KEPT = 4096
# {UTC second: its ISO 8601 text without a fraction} (datetime's formatting is ~7 µs a call)
_ISO_SECONDS: dict[int, str] = {}


def _iso_time(time_ms: float) -> str | None:
    """`iso_time` of a time that is not an int (a float from a computation)."""
    try:
        when = dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def position_feature(vehicle_id: str, time_ms: int, lat: float, lon: float,
                     speed_kmh: float | None, course_deg: float | None, seq: int) -> dict:
    """A GeoJSON Feature (RFC 7946: [lon, lat]) for one vehicle position."""
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "vehicle": vehicle_id,
            "time": iso_time(time_ms),
            "seq": seq,
            "speed_kmh": speed_kmh,
            "course_deg": course_deg,
        },
    }


def row_feature(r) -> dict:
    """`position_feature` of a committed position row (`StoredReading`)."""
    return position_feature(r.vehicle_id, r.time_ms, r.lat, r.lon, r.speed_kmh, r.course_deg,
                            r.seq)


def batch_frame(topic: str, features: list[dict]) -> Message:
    """One batch frame: a GeoJSON FeatureCollection (RFC 7946) with the topic as a member."""
    return Message(topic=topic, type="FeatureCollection", features=features)


def proposal_visible(payload: dict, may_see: Callable[[str], bool]) -> bool:
    """Whether a re-plan proposal on the live feed may go to a subscriber: only if it may see
    every vehicle the proposal touches (its `vehicles`, backend/dispatch/planning.py
    `live_proposal`), as REST answers 404 otherwise. A proposal without a readable list (from
    an older node, or hostile through NATS) goes to nobody: the REST API still lists it."""
    vehicles = payload.get("vehicles")
    if not isinstance(vehicles, list) or not all(isinstance(v, str) for v in vehicles):
        return False
    return all(may_see(v) for v in vehicles)


def _everyone(vehicle_id: str) -> bool:
    return True


class Subscriber:
    """One client's topics and queue. The edge waits on `ready`, takes `drain(now)`, and closes
    the client when `hopeless` (with `reason`) is set."""

    def __init__(self, may_see: Callable[[str], bool] = _everyone,
                 max_positions: int = MAX_POSITION_KEYS,
                 max_messages: int = MAX_PENDING_MESSAGES, hopeless_s: float = HOPELESS_S,
                 view: Any = None):
        self.may_see = may_see
        # what the subscriber may see, hashable: subscribers with equal views share batch
        # frames (the edge passes the principal's vehicle set; by default may_see itself)
        self.view = view if view is not None else may_see
        self.topics: set[str] = set()
        self.batched: set[str] = set()  # topics whose positions come as batch frames
        self.deflated: set[str] = set()  # batched topics whose frames go as raw DEFLATE
        self.max_positions = max_positions
        self.max_messages = max_messages
        self.hopeless_s = hopeless_s
        self._queue: OrderedDict[QueueKey, dict] = OrderedDict()
        self._positions = 0  # how many queue entries are coalescible positions
        self.coalesced = 0  # positions replaced by a newer one before delivery
        self.dropped = 0  # positions dropped beyond max_positions
        self.waiting_since: float | None = None  # oldest undelivered put since the last drain
        self.reason: str | None = None
        self.ready = asyncio.Event()
        self.hopeless = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queue(self) -> list[dict]:
        """What is queued, oldest first (a copy, for inspection)."""
        return list(self._queue.values())

    def put(self, message: dict, now: float, vehicle: str | None = None) -> None:
        """Queue `message`; with `vehicle` it is a position that coalesces with a queued one of
        the same topic and vehicle."""
        if self.reason is not None:
            return
        if vehicle is not None:
            key: PositionKey = (message.get("topic"), vehicle)
            if key in self._queue:
                self._queue[key] = message  # latest wins, in the place of the one it replaces
                self.coalesced += 1
            else:
                if self._positions >= self.max_positions:
                    oldest = next(k for k in self._queue if isinstance(k, tuple))
                    del self._queue[oldest]
                    self._positions -= 1
                    self.dropped += 1
                self._queue[key] = message
                self._positions += 1
        else:
            if len(self._queue) - self._positions >= self.max_messages:
                self.give_up(f"too slow: {self.max_messages} messages (alerts) undelivered")
                return
            self._queue[next(_unique)] = message
        if self.waiting_since is None:
            self.waiting_since = now
        self.ready.set()
        self.check(now)

    def put_frame(self, frame: Message, now: float) -> None:
        """Queue a batch frame (shared between subscribers); merged with an undelivered one of
        the same topic: latest per vehicle, at most `max_positions` features."""
        if self.reason is not None:
            return
        key: FrameKey = frame["topic"]
        queued = self._queue.get(key)
        if queued is None:
            self._queue[key] = frame
        else:
            merged = {f["properties"]["vehicle"]: f for f in queued["features"]}
            for f in frame["features"]:
                vehicle = f["properties"]["vehicle"]
                if vehicle in merged:
                    del merged[vehicle]  # moves to the end: the oldest are dropped first
                    self.coalesced += 1
                merged[vehicle] = f
            features = list(merged.values())
            if len(features) > self.max_positions:
                self.dropped += len(features) - self.max_positions
                features = features[-self.max_positions:]
            self._queue[key] = batch_frame(frame["topic"], features)
        if self.waiting_since is None:
            self.waiting_since = now
        self.ready.set()
        self.check(now)

    def refilter(self, may_see: Callable[[str], bool], now: float, view: Any = None) -> None:
        """The principal's visibility changed: from now on only `may_see`; queued updates and
        `vehicle:` topics of vehicles no longer visible go (the client is told it is
        unsubscribed from such a topic)."""
        self.may_see = may_see
        self.view = view if view is not None else may_see
        for key, message in list(self._queue.items()):
            if isinstance(key, str):  # a FrameKey: the topic
                self._queue[key] = batch_frame(key, [
                    f for f in message["features"] if may_see(f["properties"]["vehicle"])])
                continue
            vehicle: str | None
            if isinstance(key, tuple):  # a PositionKey: (topic, vehicle)
                is_position, vehicle = True, key[1]
            else:  # a MessageKey: an alert names its vehicle
                is_position, vehicle = False, (message.get("alert") or {}).get("vehicle")
                if "proposal" in message and not proposal_visible(message["proposal"],
                                                                  may_see):
                    del self._queue[key]
                    continue
            if vehicle is not None and not may_see(vehicle):
                del self._queue[key]
                self._positions -= is_position
        for topic in sorted(self.topics):
            if topic.startswith("vehicle:") and not may_see(topic.removeprefix("vehicle:")):
                self.topics.discard(topic)
                self.batched.discard(topic)
                self.deflated.discard(topic)
                self.put({"topic": topic, "event": "unsubscribed"}, now)

    def check(self, now: float) -> bool:
        """Mark the subscriber hopeless if updates have waited `hopeless_s`; True if so."""
        if (self.reason is None and self.waiting_since is not None
                and now - self.waiting_since >= self.hopeless_s):
            self.give_up(f"too slow: nothing taken for {self.hopeless_s:g} s")
        return self.reason is not None

    def give_up(self, reason: str) -> None:
        self.reason = reason
        self._queue.clear()
        self._positions = 0
        self.hopeless.set()
        self.ready.set()

    def wire(self, message: dict) -> str | bytes:
        """What goes on the WebSocket for a drained message: a batch frame of a deflated topic
        as bytes (a binary message), anything else as JSON text."""
        if (isinstance(message, Message) and message.get("type") == "FeatureCollection"
                and message["topic"] in self.deflated):
            return message.deflated
        return encode(message)

    def drain(self, now: float | None = None) -> list[dict]:
        """Everything queued, oldest first; the client is keeping up again."""
        out = list(self._queue.values())
        self._queue.clear()
        self._positions = 0
        self.waiting_since = None
        self.ready.clear()
        return out


class Hub:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_positions: int = MAX_POSITION_KEYS,
                 max_messages: int = MAX_PENDING_MESSAGES, hopeless_s: float = HOPELESS_S):
        self.clock = clock
        self.limits: dict[str, Any] = {"max_positions": max_positions,
                                       "max_messages": max_messages, "hopeless_s": hopeless_s}
        self.subscribers: set[Subscriber] = set()
        # vehicle → (time_ms, its feature, or the committed row it is made from when asked:
        # `position_row` while nobody takes positions; `last_feature` reads either)
        self.last: dict[str, tuple[int, Any]] = {}
        self.published = 0
        self.alerts_published = 0
        self.dispatch_published = 0
        self.disconnected = 0  # subscribers given up as hopeless
        self._gone_coalesced = 0  # counters of subscribers already removed
        self._gone_dropped = 0
        self.frames = 0  # batch frames encoded (each shared by the subscribers of one view)
        self._streaming: set[Subscriber] = set()  # with a position topic not batched
        self._batching: set[Subscriber] = set()  # with a batched topic
        self._changed: dict[str, dict] = {}  # vehicle → latest feature since the last flush

    @property
    def coalesced(self) -> int:
        return self._gone_coalesced + sum(s.coalesced for s in self.subscribers)

    @property
    def dropped(self) -> int:
        return self._gone_dropped + sum(s.dropped for s in self.subscribers)

    def new_subscriber(self, may_see: Callable[[str], bool] = _everyone,
                       view: Any = None) -> Subscriber:
        """A subscriber with this hub's limits, added."""
        sub = Subscriber(may_see, view=view, **self.limits)
        self.add(sub)
        return sub

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def remove(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            self._streaming.discard(sub)
            self._batching.discard(sub)
            self._gone_coalesced += sub.coalesced
            self._gone_dropped += sub.dropped
            self.disconnected += sub.reason is not None

    def subscribe(self, sub: Subscriber, topic: str, batch: bool = False,
                  deflate: bool = False) -> bool:
        """Subscribe and send the topic's last known positions (as one frame if `batch`;
        `deflate`: batch frames as raw DEFLATE, `Subscriber.wire`); False (and an error to
        the client) for a vehicle it may not see, worded as for one that does not exist."""
        now = self.clock()
        if topic.startswith("vehicle:") and not sub.may_see(topic.removeprefix("vehicle:")):
            sub.put({"error": f"unknown topic {topic[:80]!r}"}, now)
            return False
        sub.topics.add(topic)
        if batch and not _event_topic(topic):
            sub.batched.add(topic)
        else:
            sub.batched.discard(topic)
        (sub.deflated.add if deflate and topic in sub.batched else sub.deflated.discard)(topic)
        self._sort(sub)
        sub.put({"topic": topic, "event": "subscribed"}, now)
        known = [(vehicle, feature) for vehicle in sorted(self.last)
                 if topic in (ALL, vehicle_topic(vehicle)) and sub.may_see(vehicle)
                 and (feature := self.last_feature(vehicle)) is not None]
        if topic in sub.batched:
            if known:
                sub.put_frame(batch_frame(topic, [f for _, f in known]), now)
        else:
            for vehicle, feature in known:
                sub.put({"topic": topic, "feature": feature}, now, vehicle=vehicle)
        return True

    def unsubscribe(self, sub: Subscriber, topic: str) -> None:
        sub.topics.discard(topic)
        sub.batched.discard(topic)
        sub.deflated.discard(topic)
        self._sort(sub)

    def _sort(self, sub: Subscriber) -> None:
        """Keep the fan-out's sets: who gets positions one by one, who gets batch frames."""
        (self._streaming.add if any(not _event_topic(t) for t in sub.topics - sub.batched)
         else self._streaming.discard)(sub)
        (self._batching.add if sub.batched else self._batching.discard)(sub)

    def seed(self, vehicle_id: str, time_ms: int, feature: dict) -> None:
        """Load a last-known position (from the store at start-up) without publishing it."""
        if vehicle_id not in self.last or time_ms > self.last[vehicle_id][0]:
            self.last[vehicle_id] = (time_ms, feature)

    def position(self, vehicle_id: str, time_ms: int, feature: dict) -> bool:
        """Publish a committed position if it is newer (device time) than the vehicle's last
        known one: backfilled history never shows as live movement."""
        known = self.last.get(vehicle_id)
        if known is not None and time_ms <= known[0]:
            return False
        self.last[vehicle_id] = (time_ms, feature)
        # `publish(feature, (ALL, vehicle_topic(vehicle_id)))` for the gateway's every vehicle
        # and tick: its topics only made when a subscriber streams positions one by one
        self.published += 1
        if self._batching:
            self._changed.pop(vehicle_id, None)  # re-inserted last: frames keep arrival order
            self._changed[vehicle_id] = feature
        if self._streaming:
            self._deliver(vehicle_id, (ALL, vehicle_topic(vehicle_id)), "feature", feature,
                          coalesce=True, subscribers=self._streaming)
        return True

    @property
    def takes_positions(self) -> bool:
        """A subscriber takes positions now (one by one or in batch frames)."""
        return bool(self._batching or self._streaming)

    def position_row(self, r) -> bool:
        """`position` of a committed position row (a `StoredReading` with lat and lon): while
        no subscriber takes positions, the row is kept as the vehicle's last, its feature
        made only if one asks (`last_feature`): a fleet's every position, every second,
        without a subscriber made four containers and a time text each, for nobody."""
        if self._batching or self._streaming:
            known = self.last.get(r.vehicle_id)
            if known is not None and r.time_ms <= known[0]:
                return False  # (no feature made for nothing)
            return self.position(r.vehicle_id, r.time_ms, row_feature(r))
        known = self.last.get(r.vehicle_id)
        if known is not None and r.time_ms <= known[0]:
            return False
        self.last[r.vehicle_id] = (r.time_ms, r)
        self.published += 1
        return True

    def last_feature(self, vehicle_id: str) -> dict | None:
        """The vehicle's last known position as a feature (None: none known)."""
        known = self.last.get(vehicle_id)
        if known is None:
            return None
        time_ms, value = known
        if type(value) is not dict:  # a row kept by `position_row`: made once, when asked
            value = row_feature(value)
            self.last[vehicle_id] = (time_ms, value)
        return value

    def publish(self, feature: dict, topics: tuple[str, ...]) -> None:
        self.published += 1
        vehicle = feature["properties"]["vehicle"]
        if self._batching:
            self._changed.pop(vehicle, None)  # re-inserted last: frames keep arrival order
            self._changed[vehicle] = feature
        self._deliver(vehicle, topics, "feature", feature, coalesce=True,
                      subscribers=self._streaming)

    def flush(self) -> int:
        """Send the batch frames of this tick: per (topic, view) of the batched subscribers,
        one frame with the latest feature of every vehicle changed since the last flush,
        encoded once for all of them. Returns how many frames were made."""
        changed, self._changed = self._changed, {}
        if not changed or not self._batching:
            return 0
        now = self.clock()
        groups: dict[tuple, list[Subscriber]] = {}
        for sub in self._batching:
            for topic in sub.batched:
                groups.setdefault((topic, sub.view), []).append(sub)
        made = 0
        for (topic, _), subs in groups.items():
            may_see = subs[0].may_see
            if topic == ALL:
                features = [f for v, f in changed.items() if may_see(v)]
            else:
                vehicle = topic.removeprefix("vehicle:")
                features = [changed[vehicle]] if vehicle in changed and may_see(vehicle) else []
            if not features:
                continue
            frame = batch_frame(topic, features)
            made += 1
            for sub in subs:
                sub.put_frame(frame, now)
        self.frames += made
        return made

    def publish_alert(self, alert: dict) -> None:
        """An alert opened, changed or closed: to `alerts` and to `vehicle:<id>`, for those
        who may see the vehicle; never coalesced, never dropped silently."""
        self.alerts_published += 1
        vehicle = alert["vehicle"]
        self._deliver(vehicle, (ALERTS, vehicle_topic(vehicle)), "alert", alert, coalesce=False)

    def publish_dispatch(self, field: str, payload: dict, vehicle: str | None,
                         route_id: str | None = None) -> None:
        """A job, route or transition changed (`field`: "job", "route", "transition"): to
        `dispatch` and to `route:<id>`, for those who may see `vehicle` (a job on no route:
        everyone), and a route to its driver's `driver:<id>`; never coalesced."""
        self.dispatch_published += 1
        topics = (DISPATCH,) if route_id is None else (DISPATCH, route_topic(route_id))
        now = self.clock()
        messages = {topic: Message(topic=topic, **{field: payload}) for topic in topics}
        for sub in list(self.subscribers):
            if vehicle is not None and not sub.may_see(vehicle):
                continue
            if field == "proposal" and not proposal_visible(payload, sub.may_see):
                continue
            for topic in topics:
                if topic in sub.topics:
                    sub.put(messages[topic], now)
        if field == "route" and payload.get("driver_id"):
            # the driver's app hears of a route given to it, not only of its shift's route
            self.publish_driver(payload["driver_id"], "route", payload)

    def publish_driver(self, driver_id: str, field: str, payload: dict) -> None:
        """To one driver's app (`driver:<id>`): an action's outcome, a message, a change of
        the driver's route; never coalesced."""
        topic = driver_topic(driver_id)
        now = self.clock()
        message = Message(topic=topic, **{field: payload})
        for sub in list(self.subscribers):
            if topic in sub.topics:
                sub.put(message, now)

    def publish_vehicle_event(self, vehicle: str, field: str, payload: dict) -> None:
        """An event about a vehicle (a driver's message) to `vehicle:<id>`, for those who may
        see it; never coalesced."""
        self._deliver(vehicle, (vehicle_topic(vehicle),), field, payload, coalesce=False)

    def _deliver(self, vehicle: str, topics: tuple[str, ...], field: str, payload: dict,
                 coalesce: bool, subscribers: set[Subscriber] | None = None) -> None:
        """Queue `{"topic": T, field: payload}` for every subscriber of T that may see the
        vehicle; positions (`coalesce`) replace a queued one of the same topic and vehicle."""
        targets = self.subscribers if subscribers is None else subscribers
        if not targets:  # the usual case for positions: clients take batch frames (flush)
            return
        now = self.clock()
        messages = {topic: Message(topic=topic, **{field: payload}) for topic in topics}
        for sub in list(targets):
            if not sub.may_see(vehicle):
                continue
            for topic in topics:
                if topic in sub.topics and not (coalesce and topic in sub.batched):
                    sub.put(messages[topic], now, vehicle=vehicle if coalesce else None)

    def stats(self) -> dict:
        return {"subscribers": len(self.subscribers), "published": self.published,
                "alerts_published": self.alerts_published,
                "dispatch_published": self.dispatch_published, "coalesced": self.coalesced,
                "dropped": self.dropped, "disconnected": self.disconnected,
                "frames": self.frames}
