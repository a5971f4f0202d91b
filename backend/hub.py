"""Live hub: topics, subscribers with bounded queues, and last-known positions (sans-IO).

The WebSocket edge (web.py) moves JSON between browsers and `Subscriber` queues.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from typing import Any

ALL = "live_updates:all"
ALERTS = "alerts"
# A browser tab that stops reading (sleeping laptop) loses its oldest updates beyond this,
# never the server's memory: 256 positions is minutes of a busy fleet view.
HUB_CLIENT_QUEUE = 256


def vehicle_topic(vehicle_id: str) -> str:
    return f"vehicle:{vehicle_id}"


def valid_topic(topic: Any) -> bool:
    return isinstance(topic, str) and (
        topic in (ALL, ALERTS) or (topic.startswith("vehicle:") and 8 < len(topic) <= 72)
    )


def position_feature(vehicle_id: str, time_ms: int, lat: float, lon: float,
                     speed_kmh: float | None, course: float | None, seq: int) -> dict:
    """A GeoJSON Feature (RFC 7946: [lon, lat]) for one vehicle position."""
    when = dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC)
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "vehicle": vehicle_id,
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "seq": seq,
            "speed_kmh": speed_kmh,
            "course_deg": course,
        },
    }


class Subscriber:
    def __init__(self, max_queue: int = HUB_CLIENT_QUEUE):
        self.topics: set[str] = set()
        self.queue: deque[dict] = deque(maxlen=max_queue)
        self.dropped = 0
        self.ready = asyncio.Event()

    def put(self, message: dict) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(message)
        self.ready.set()

    def drain(self) -> list[dict]:
        out = list(self.queue)
        self.queue.clear()
        self.ready.clear()
        return out


class Hub:
    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.last: dict[str, tuple[int, dict]] = {}  # vehicle → (time_ms, feature)
        self.published = 0

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def subscribe(self, sub: Subscriber, topic: str) -> None:
        sub.topics.add(topic)
        sub.put({"topic": topic, "event": "subscribed"})
        for vehicle, (_, feature) in sorted(self.last.items()):
            if topic in (ALL, vehicle_topic(vehicle)):
                sub.put({"topic": topic, "feature": feature})

    def unsubscribe(self, sub: Subscriber, topic: str) -> None:
        sub.topics.discard(topic)

    def seed(self, vehicle_id: str, time_ms: int, feature: dict) -> None:
        """Load a last-known position (from the store at start-up) without publishing it."""
        if vehicle_id not in self.last or time_ms > self.last[vehicle_id][0]:
            self.last[vehicle_id] = (time_ms, feature)

    def position(self, vehicle_id: str, time_ms: int, feature: dict) -> bool:
        """Publish a committed position if it is newer than the vehicle's last known one."""
        known = self.last.get(vehicle_id)
        if known is not None and time_ms <= known[0]:
            return False
        self.last[vehicle_id] = (time_ms, feature)
        self.publish(feature, (ALL, vehicle_topic(vehicle_id)))
        return True

    def publish_alert(self, alert: dict) -> None:
        """An alert opened, changed or closed: to `alerts` and to `vehicle:<id>`."""
        topics = (ALERTS, vehicle_topic(alert["vehicle"]))
        for sub in self.subscribers:
            for topic in topics:
                if topic in sub.topics:
                    sub.put({"topic": topic, "alert": alert})

    def publish(self, feature: dict, topics: tuple[str, ...]) -> None:
        self.published += 1
        for sub in self.subscribers:
            for topic in topics:
                if topic in sub.topics:
                    sub.put({"topic": topic, "feature": feature})
