"""The one applier of driver actions: the edge around actions.decide (the store, the dispatch
service's announcements, the hub). The driver app's HTTP API and actions arriving through a
vehicle's journal both come here; it holds no state, so any number of them may exist.

Exactly once: the action row (unique key; unique device and sequence number) and the job
transition it makes (its id derived from the key) are written in one transaction, and a
re-sent action finds its row and gets the stored answer. A decision made on a job that moved
meanwhile (a person, detection, another backend) is refused by the store (StaleState) and
made again on the new history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..dispatch.storage import StaleState
from .actions import DriverAction, KeyReused, action_time, decide
from .storage import SeqTaken

log = logging.getLogger(__name__)

# Decisions made again when the job keeps moving under them; then the caller gets StaleState
# (the app retries the same action later: nothing is lost).
DECIDE_ATTEMPTS = 3
VIAS = ("app", "vehicle")


class FilesMissing(ValueError):
    """A proof of delivery names images this driver has not uploaded (upload them first)."""

    def __init__(self, ids: list[str]):
        super().__init__(f"upload these images first: {', '.join(ids)}")
        self.ids = ids


def public_action(row: dict) -> dict:
    """A stored action as the API and the hub show it."""
    return {k: row[k] for k in ("seq", "key", "device_id", "device_seq", "driver_id", "kind",
                                "job_id", "route_id", "vehicle_id", "outcome", "detail",
                                "transition_id", "received_ms", "via")} | {"body": row["body"]}


class ActionApplier:
    """`apply(driver_id, action, now_ms)`: the stored outcome of the action, applied once."""

    def __init__(self, store, dispatch=None, hub=None,
                 on_refused: Callable[[str, DriverAction, str], None] | None = None):
        self.store = store
        self.dispatch = dispatch  # the Dispatcher: transitions announced like its own
        self.hub = hub
        self.on_refused = on_refused

    async def apply(self, driver_id: str, action: DriverAction, now_ms: int,
                    via: str = "app") -> tuple[dict, bool]:
        """(the stored action, True if applied now — False for a re-send answered from the
        store). KeyReused if the key or the device's sequence number was used for another
        action (logged); FilesMissing if a proof of delivery names images not uploaded."""
        if via not in VIAS:
            raise ValueError(f"via: one of {VIAS}")
        digest = action.digest()
        stored = await self.store.driver_action(action.key)
        if stored is not None:
            return self._same(stored, driver_id, action, digest), False
        if action.pod is not None and action.pod.files:
            have = await self.store.driver_files_exist(list(action.pod.files), driver_id)
            missing = [f for f in action.pod.files if f not in have]
            if missing:
                raise FilesMissing(missing)
        for _ in range(DECIDE_ATTEMPTS):
            route = (await self.store.dispatch_route(action.route_id)
                     if action.route_id else None)
            job = await self.store.job(action.job_id) if action.job_id else None
            history = await self.store.transitions(action.job_id) if job else []
            last = await self.store.device_last_seq(action.device_id)
            d = decide(action, driver_id, now_ms, last_seq=last, job=job, route=route,
                       history=history)
            vehicle = route.vehicle_id if route is not None else None
            if action.kind == "message" and vehicle is None:
                vehicle = await self._vehicle_now(driver_id, now_ms)
            row = {"key": action.key, "digest": digest, "device_id": action.device_id,
                   "device_seq": action.device_seq, "driver_id": driver_id,
                   "kind": action.kind, "job_id": action.job_id, "route_id": action.route_id,
                   "vehicle_id": vehicle, "body": action.to_dict(), "outcome": d.outcome,
                   "detail": d.detail,
                   "transition_id": d.transition.id if d.transition else None,
                   "received_ms": now_ms, "via": via}
            message = None
            if action.kind == "message" and not d.conflict:
                message = {"id": action.key, "vehicle_id": vehicle, "driver_id": driver_id,
                           "direction": "from_driver", "author": f"driver:{driver_id}",
                           "text": action.text, "sent_ms": now_ms}
            try:
                saved, new = await self.store.add_driver_action(
                    row, [d.transition] if d.transition else [], message)
            except StaleState:
                continue
            except SeqTaken:
                self._refused(driver_id, action, "its device sequence number was used by "
                              "another action")
                raise KeyReused(f"device {action.device_id} sequence {action.device_seq} "
                                "was used by another action") from None
            if not new:  # a re-send of the same action won the race
                return self._same(saved, driver_id, action, digest), False
            await self._announce(saved, d.transition, message)
            return saved, True
        raise StaleState(action.job_id or "", None)

    async def apply_from_vehicle(self, vehicle_id: str, action: DriverAction, now_ms: int,
                                 taken_ms: int | None = None) -> tuple[dict, bool] | None:
        """An action that came through a vehicle's journal: applied as the driver of the
        vehicle's shift when it was taken (`taken_ms`: the `act` reading's device time,
        clamped like `done_ms` to the last MAX_OFFLINE_MS; None: now) — not when it arrives,
        which may be after a shift change. None, nothing stored, if nobody drove the vehicle
        then: the caller keeps it."""
        at_ms = now_ms if taken_ms is None else action_time(taken_ms, now_ms)
        driver_id = await self.store.driver_of(vehicle_id, at_ms)
        if driver_id is None:
            return None
        return await self.apply(driver_id, action, now_ms, via="vehicle")

    def _same(self, stored: dict, driver_id: str, action: DriverAction, digest: str) -> dict:
        if stored["digest"] != digest or stored["driver_id"] != driver_id:
            self._refused(driver_id, action, "its key was used for another action")
            raise KeyReused(f"key {action.key} was used for another action")
        return stored

    def _refused(self, driver_id: str, action: DriverAction, why: str) -> None:
        log.warning("driver %s: action %s (device %s, seq %d) refused: %s", driver_id,
                    action.key, action.device_id, action.device_seq, why)
        if self.on_refused is not None:
            self.on_refused(driver_id, action, why)

    async def _vehicle_now(self, driver_id: str, now_ms: int) -> str | None:
        route = await self.store.driver_shift(driver_id, now_ms)
        return None if route is None else route.vehicle_id

    async def _announce(self, row: dict, transition, message: dict | None) -> None:
        if transition is not None and self.dispatch is not None:
            await self.dispatch.announce([transition], row["vehicle_id"])
        if self.hub is None:
            return
        shown = public_action(row)
        self.hub.publish_dispatch("driver_action", shown, row["vehicle_id"], row["route_id"])
        self.hub.publish_driver(row["driver_id"], "driver_action", shown)
        if message is not None:  # as stored (with its seq: the apps' cursor)
            publish_message(self.hub, await self.store.driver_message(message["id"]) or message)


def publish_message(hub, message: dict) -> None:
    """A message to or from a driver: to the dispatchers who see the vehicle (`vehicle:<id>`)
    and to the driver's app (`driver:<id>`)."""
    if message.get("vehicle_id"):
        hub.publish_vehicle_event(message["vehicle_id"], "message", message)
    if message.get("driver_id"):
        hub.publish_driver(message["driver_id"], "message", message)

