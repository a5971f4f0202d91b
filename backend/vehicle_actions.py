"""Driver actions that came through a vehicle's journal (docs/protocol.md §4 "act") into the
one applier of driver actions (backend/driver/applier.py), and arrivals/departures the
vehicle detected into the dispatch service (revision 3), and proof-of-delivery images sent in
parts (revision 4, geostream/image_parts.py) into driver files, for the gateway: called with a
batch's `act` readings before the batch is stored and acknowledged. A part refused (hostile or
broken: other bytes for a part held, a header that disagrees, a hash that does not match, not
an image) is returned to the gateway to dead-letter; what was held of its image is dropped.

An action the applier's rules refuse (a malformed body, a key reused for another action, images
named that were never uploaded) or
that has nobody to apply it as (no driver on the vehicle's shift now) stays as its stored
reading, logged: nothing the driver did is dropped, and the batch is acknowledged. A failure of
the store itself propagates: the batch is not acknowledged and the agent sends it again (the
applier applies each key once).
"""

from __future__ import annotations

import asyncio
import logging

from geostream.image_parts import (
    Held,
    Part,
    PartRefused,
    admit,
    assemble,
    is_part,
    parse_part,
)

from .dispatch.onboard import is_detection
from .driver.actions import ActionRefused, KeyReused, action_time, parse_action
from .driver.applier import ActionApplier, FilesMissing
from .driver.images import ImageRefused, clean_image
from .store.rows import StoredReading

log = logging.getLogger(__name__)


class VehicleActions:
    def __init__(self, applier: ActionApplier):
        self.applier = applier
        self.applied = 0  # applied now (not re-sends)
        self.kept = 0  # refused or without a driver: kept as readings only
        self.detected = 0  # arrivals/departures detected on the vehicle, recorded now
        self.images = 0  # images assembled from parts and stored now
        # one batch of a vehicle at a time, in the order they came (asyncio.Lock is FIFO):
        # its image parts and the action naming them; other vehicles never wait on it
        self._locks: dict[str, asyncio.Lock] = {}

    async def __call__(self, vehicle: str, readings: list[StoredReading],
                       now_ms: int) -> list[tuple[int, str]]:
        """Apply a batch's `act` readings; the (seq, why) of the image parts to dead-letter."""
        lock = self._locks.setdefault(vehicle, asyncio.Lock())
        try:
            async with lock:
                return await self._batch(vehicle, readings, now_ms)
        finally:
            if not lock.locked() and self._locks.get(vehicle) is lock:
                del self._locks[vehicle]  # nobody waits: bounded by the vehicles in flight

    async def _batch(self, vehicle: str, readings: list[StoredReading],
                     now_ms: int) -> list[tuple[int, str]]:
        dead: list[tuple[int, str]] = []
        for r in sorted(readings, key=lambda r: (r.epoch, r.seq)):  # the order taken
            if is_part(r.data):
                why = await self._part(vehicle, r, now_ms)
                if why is not None:
                    dead.append((r.seq, why))
                continue
            if is_detection(r.data):
                await self._detection(vehicle, r, now_ms)
                continue
            try:
                action = parse_action(r.data)
                # the driver of the vehicle when the action was taken (its device time), not now
                outcome = await self.applier.apply_from_vehicle(vehicle, action, now_ms,
                                                                r.time_ms)
            # FilesMissing: images come over HTTP only; one named here that the backend never
            # got cannot come later through the journal, so raising would stall the vehicle
            except (ActionRefused, KeyReused, FilesMissing) as exc:
                self.kept += 1
                log.warning("vehicle %s: action at seq %d kept, not applied: %s", vehicle,
                            r.seq, exc)
                continue
            if outcome is None:
                self.kept += 1
                log.warning("vehicle %s: action %s kept, not applied: nobody drove the "
                            "vehicle when it was taken", vehicle, action.key)
            elif outcome[1]:
                self.applied += 1
        return dead

    async def _part(self, vehicle: str, r: StoredReading, now_ms: int) -> str | None:
        """One part of an image (docs/protocol.md §4 "Images"): held, or the image assembled,
        re-encoded and stored as a driver file; why it is refused (→ dead letter), or None."""
        store = self.applier.store
        try:
            part = parse_part(r.data)
        except PartRefused as exc:  # the edge checked it already; a second guard costs little
            return str(exc)
        driver = await store.driver_of(vehicle, action_time(r.time_ms, now_ms))
        if driver is None:
            self.kept += 1
            log.warning("vehicle %s: image part at seq %d kept, not assembled: nobody drove "
                        "the vehicle when it was taken", vehicle, r.seq)
            return None
        stored = bool(await store.driver_files_exist([part.image_id], driver))
        rows = [] if stored else await store.image_parts(vehicle, part.image_id)
        held = Held(_header(rows[0]), {x["idx"]: x["data"] for x in rows},
                    max(x["received_ms"] for x in rows)) if rows else None
        step = assemble(held, part, now_ms, stored)
        if step.action == "same":
            if stored:  # parts a crash left behind between storing the image and this
                await store.drop_image_parts(vehicle, part.image_id)
            return None
        if step.action == "refuse":
            await store.drop_image_parts(vehicle, part.image_id)
            log.warning("vehicle %s: image part at seq %d refused: %s", vehicle, r.seq,
                        step.why)
            return step.why
        if step.action == "keep":
            if held is None:  # a new image: within the vehicle's bound of open ones
                stale, why = admit(await store.open_images(vehicle), part.image_id, now_ms)
                for image_id in stale:
                    await store.drop_image_parts(vehicle, image_id)
                    log.warning("vehicle %s: image %s given up: no part for a week",
                                vehicle, image_id)
                if why:
                    log.warning("vehicle %s: image part at seq %d refused: %s", vehicle,
                                r.seq, why)
                    return why
            await store.put_image_part(_row(vehicle, part, now_ms))
            return None
        assert step.image is not None
        try:  # Pillow's decoding is CPU work: off the event loop, other vehicles go on
            clean = await asyncio.to_thread(clean_image, step.image, part.kind)
        except ImageRefused as exc:
            await store.drop_image_parts(vehicle, part.image_id)
            log.warning("vehicle %s: image %s refused: %s", vehicle, part.image_id, exc)
            return f"image {part.image_id}: {exc}"
        await store.put_driver_file({
            "id": part.image_id, "driver_id": driver, "vehicle_id": vehicle,
            "job_id": part.job_id, "kind": part.kind, "media_type": clean.media_type,
            "data": clean.data, "created_ms": now_ms})
        await store.drop_image_parts(vehicle, part.image_id)
        self.images += 1
        return None

    async def _detection(self, vehicle: str, r: StoredReading, now_ms: int) -> None:
        """An arrival or departure detected on the vehicle: the dispatch service's (it is
        no driver's action: no driver needed, never the applier's)."""
        dispatch = self.applier.dispatch
        if dispatch is None:
            self.kept += 1
            log.warning("vehicle %s: detection at seq %d kept: no dispatch here", vehicle,
                        r.seq)
            return
        outcome = await dispatch.vehicle_detected(vehicle, r.data, now_ms)
        if outcome.startswith("refused"):
            self.kept += 1
            log.warning("vehicle %s: detection at seq %d kept, not recorded: %s", vehicle,
                        r.seq, outcome)
        elif outcome == "recorded":
            self.detected += 1


def _header(row: dict) -> tuple:
    """Part.header() of a held part's row."""
    return (row["image_id"], row["kind"], row["job_id"], row["count"], row["size"],
            row["sha256"])


def _row(vehicle: str, part: Part, now_ms: int) -> dict:
    return {"vehicle_id": vehicle, "image_id": part.image_id, "idx": part.index,
            "kind": part.kind, "job_id": part.job_id, "count": part.count, "size": part.size,
            "sha256": part.sha256, "data": part.data, "received_ms": now_ms}
