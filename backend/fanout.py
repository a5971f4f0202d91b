"""Live fan-out across nodes on NATS (docs/scaling.md §5): gateways publish committed positions
and alerts, every node's in-process `Hub` is fed from the subscription.

Core NATS, at most once: the map wants the newest position, and storage never depends on it.
While NATS is away, nats-py keeps reconnecting and buffers up to `PENDING_BYTES` of publishes;
beyond that a position is dropped (the next one replaces it). Off by default: one machine keeps
the gateway publishing straight into its hub (`nats_url` empty).
"""

from __future__ import annotations

import asyncio
import json
import logging

import nats.errors

from geostream.clock import wall_ms

from . import fanout_messages as messages
from .hub import Hub
from .natsconn import NatsSettings, connect

log = logging.getLogger(__name__)

POS_SUBJECT = "fleet.pos."
ALERT_SUBJECT = "fleet.alert."
# dispatch changes (jobs, routes, transitions, ETAs, proposals): every node's hub shows them
DISPATCH_SUBJECT = "fleet.dispatch"
# a node stored a command for a vehicle; the node holding it sends it (docs/scaling.md §7)
WAKE_SUBJECT = "fleet.cmd.wake"
# A vehicle id may hold '.', NATS's token separator; '~' is outside the id alphabet.
_DOT = "~"
# Publishes kept while disconnected: ~5 s of 1,000 vehicles' positions at ~400 bytes each.
PENDING_BYTES = 2 * 1024 * 1024


def subject(prefix: str, vehicle_id: str) -> str:
    return prefix + vehicle_id.replace(".", _DOT)


def vehicle_of(subject_name: str) -> str:
    """The vehicle a subject names; ValueError if it is not a vehicle id."""
    return messages.vehicle_id(subject_name.rsplit(".", 1)[1].replace(_DOT, "."))


class NatsFanout:
    """The gateway's publisher (`position`, `publish_alert`, as a `Hub` offers them) and the
    subscription that feeds `hub`."""

    def __init__(self, nats: NatsSettings | str, hub: Hub):
        self.settings = NatsSettings(nats) if isinstance(nats, str) else nats
        self.hub = hub
        self.nc = None
        # set before start(): async callable(vehicle) run when another node stored a command
        self.on_wake = None
        # invalid: received messages refused by backend/fanout_messages.py (logged too)
        self.stats = {"published": 0, "received": 0, "dropped": 0, "reconnects": 0,
                      "invalid": 0}
        # publish-to-delivery, ms, of the last positions received (docs/scaling.md figures)
        self.latencies_ms: list[int] = []

    async def start(self) -> NatsFanout:
        async def reconnected():
            self.stats["reconnects"] += 1
            log.info("NATS reconnected: %s", self.nc.connected_url.netloc)

        async def disconnected():
            log.warning("NATS disconnected; live fan-out paused (storage unaffected)")

        async def error(exc):
            log.debug("NATS: %s", exc)

        self.nc = await connect(self.settings, "fleet-backend", pending_size=PENDING_BYTES,
                                reconnected_cb=reconnected, disconnected_cb=disconnected,
                                error_cb=error)
        await self.nc.subscribe(POS_SUBJECT + "*", cb=self._on_position)
        await self.nc.subscribe(ALERT_SUBJECT + "*", cb=self._on_alert)
        await self.nc.subscribe(DISPATCH_SUBJECT, cb=self._on_dispatch)
        if self.on_wake is not None:
            await self.nc.subscribe(WAKE_SUBJECT, cb=self._on_wake)
        await self.nc.flush()
        return self

    async def stop(self) -> None:
        """Drain: what was published leaves, the subscriptions end. A client that is not
        connected (NATS restarting) cannot drain; it is closed (the fan-out is live display:
        nothing stored waits on it)."""
        nc, self.nc = self.nc, None
        if nc is None:
            return
        if nc.is_connected:
            try:
                await nc.drain()
                return
            except nats.errors.Error as exc:  # the connection went during the drain
                log.warning("NATS: %s at stop; closing without draining", exc)
        else:
            log.warning("NATS not connected at stop; closing without draining")
        await nc.close()

    # --- publishing (called synchronously by the gateway and the alert engine) ------------

    def position(self, vehicle_id: str, time_ms: int, feature: dict) -> bool:
        return self._publish(subject(POS_SUBJECT, vehicle_id),
                             {"time_ms": time_ms, "feature": feature})

    def publish_alert(self, alert: dict) -> None:
        self._publish(subject(ALERT_SUBJECT, alert["vehicle"]), {"alert": alert})

    def publish_dispatch(self, field: str, payload: dict, vehicle: str | None,
                         route_id: str | None = None) -> None:
        """A dispatch change, as `Hub.publish_dispatch` takes it: to every node's hub (this
        one's too, through its own subscription). One subject keeps their order."""
        self._publish(DISPATCH_SUBJECT, {"field": field, "payload": payload,
                                         "vehicle": vehicle, "route_id": route_id})

    def wake(self, vehicle_id: str) -> None:
        """Tell every node that `vehicle_id` has a new command (at most once: a lost wake-up
        leaves the command for the vehicle's next welcome)."""
        self._publish(WAKE_SUBJECT, {"vehicle": vehicle_id})

    def _publish(self, name: str, body: dict) -> bool:
        if self.nc is None:
            self.stats["dropped"] += 1
            return False
        body["published_ms"] = wall_ms()
        task = asyncio.get_running_loop().create_task(
            self.nc.publish(name, json.dumps(body, separators=(",", ":")).encode()))
        task.add_done_callback(self._published)
        return True

    def _published(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:
            self.stats["dropped"] += 1  # outbound buffer full while disconnected
        else:
            self.stats["published"] += 1

    # --- the subscription ------------------------------------------------------------------

    def _invalid(self, msg, exc: ValueError) -> None:
        self.stats["invalid"] += 1
        log.warning("NATS: dropped a message on %.80s: %s", msg.subject, exc)

    async def _on_position(self, msg) -> None:
        try:
            vehicle = vehicle_of(msg.subject)
            time_ms, feature, sent_ms = messages.decode_position(msg.data, vehicle)
        except ValueError as exc:
            self._invalid(msg, exc)
            return
        self.stats["received"] += 1
        if sent_ms is not None:
            self._latency(sent_ms)
        self.hub.position(vehicle, time_ms, feature)

    async def _on_alert(self, msg) -> None:
        try:
            alert = messages.decode_alert(msg.data, vehicle_of(msg.subject))
        except ValueError as exc:
            self._invalid(msg, exc)
            return
        self.stats["received"] += 1
        self.hub.publish_alert(alert)

    async def _on_dispatch(self, msg) -> None:
        try:
            field, payload, vehicle, route_id = messages.decode_dispatch(msg.data)
        except ValueError as exc:
            self._invalid(msg, exc)
            return
        self.stats["received"] += 1
        self.hub.publish_dispatch(field, payload, vehicle, route_id)

    async def _on_wake(self, msg) -> None:
        try:
            vehicle = messages.decode_wake(msg.data)
        except ValueError as exc:
            self._invalid(msg, exc)
            return
        await self.on_wake(vehicle)

    def _latency(self, published_ms: int) -> None:
        if len(self.latencies_ms) >= 100_000:
            del self.latencies_ms[:50_000]
        self.latencies_ms.append(wall_ms() - published_ms)
