"""Driver actions that came through a vehicle's journal (docs/protocol.md §4 "act") into the
one applier of driver actions (backend/driver/applier.py), and arrivals/departures the
vehicle detected into the dispatch service (revision 3), and proof-of-delivery images sent in
parts (revision 4, geostream/image_parts.py) into driver files, for the gateway: called with a
batch's `act` readings before the batch is stored and acknowledged. A part refused (hostile or
broken: other bytes for a part held, a header that disagrees, a hash that does not match, not
an image) is returned to the gateway to dead-letter; what was held of its image is dropped.

An action the applier's rules refuse (a malformed body, a key reused for another action) or
that has nobody to apply it as (no driver on the vehicle's shift now) stays as its stored
reading, logged: nothing the driver did is dropped, and the batch is acknowledged. A failure of
the store itself propagates: the batch is not acknowledged and the agent sends it again (the
applier applies each key once). Any other failure on one reading (a bug, an action the backend
can never apply) is counted in its dead letter (backend/driver/letters.py): after
DEAD_AFTER_FAILURES identical ones the reading is set aside, acknowledged, and kept with its
error until an admin replays it (`replay`); a proof naming images the backend does not have
(never sent, or refused as no image) is such a letter at once, with the reason.
"""

from __future__ import annotations

import asyncio
import logging

from geostream.image_parts import (
    STALE_MS,
    Held,
    Part,
    PartRefused,
    admit,
    assemble,
    is_part,
    parse_part,
)

from .dispatch.onboard import is_detection
from .dispatch.storage import StaleState
from .driver import letters
from .driver.actions import ActionRefused, KeyReused, action_time, parse_action
from .driver.applier import ActionApplier, FilesMissing
from .driver.images import ImageRefused, clean_image
from .store.rows import StoredReading

log = logging.getLogger(__name__)

# How often the backend sweeps the parts of images that never completed (older than
# geostream.image_parts.STALE_MS): hourly is far finer than a week's limit and costs one
# indexed query.
SWEEP_EVERY_S = 3600.0


# What `_part` answers for a part nobody drove the vehicle for: kept as its reading only.
_NOBODY = "nobody drove the vehicle when it was taken"


class ActionFailed(RuntimeError):
    """One reading failed (not the database's fault) and is not set aside yet: the batch is
    not acknowledged, the agent sends it again."""


class ImageBroke(RuntimeError):
    """Re-encoding an image failed other than by refusing it (a bug): counted, not taken for
    the database's trouble (Pillow's errors are OSErrors)."""


class NotReplayable(ValueError):
    """A letter that a replay cannot help (an image refused by rule)."""


class VehicleActions:
    def __init__(self, applier: ActionApplier,
                 dead_after: int = letters.DEAD_AFTER_FAILURES):
        self.applier = applier
        self.dead_after = dead_after
        self.applied = 0  # applied now (not re-sends)
        self.kept = 0  # refused or without a driver: kept as readings only
        self.detected = 0  # arrivals/departures detected on the vehicle, recorded now
        self.images = 0  # images assembled from parts and stored now
        self.failed = 0  # failures counted towards a dead letter
        self.dead_lettered = 0  # readings set aside as dead letters now
        self.swept = 0  # parts of images that never completed, dropped by the sweep
        # one batch of a vehicle at a time, in the order they came (asyncio.Lock is FIFO):
        # its image parts and the action naming them; other vehicles never wait on it
        self._locks: dict[str, asyncio.Lock] = {}

    async def __call__(self, vehicle: str, readings: list[StoredReading],
                       now_ms: int) -> list[tuple[int, str]]:
        """Apply a batch's `act` readings; the (seq, why) of the image parts to dead-letter.
        Raises (the batch is sent again) on the database's failure, or on a reading's
        failure short of its dead letter (ActionFailed)."""
        lock = self._locks.setdefault(vehicle, asyncio.Lock())
        try:
            async with lock:
                return await self._batch(vehicle, readings, now_ms)
        finally:
            if not lock.locked() and self._locks.get(vehicle) is lock:
                del self._locks[vehicle]  # nobody waits: bounded by the vehicles in flight

    def transient(self, exc: BaseException) -> bool:
        """The database's failure (or a job moving under the decision): try again later,
        never counted towards a dead letter."""
        if isinstance(exc, (StaleState, asyncio.TimeoutError)):
            return True
        if isinstance(exc, (ImageBroke, ActionFailed)):
            return False
        return self.applier.store.is_transient(exc)

    async def _batch(self, vehicle: str, readings: list[StoredReading],
                     now_ms: int) -> list[tuple[int, str]]:
        store = self.applier.store
        dead: list[tuple[int, str]] = []
        for r in sorted(readings, key=lambda r: (r.epoch, r.seq)):  # the order taken
            letter = await store.action_letter(vehicle, r.epoch, r.seq)
            if letter is not None and letter["state"] == "refused":
                dead.append((r.seq, letter["error"]))  # a refused part sent again: as before
                continue
            if letter is not None and letter["state"] == "dead":
                continue  # set aside (a batch sent again): acknowledged, kept until replayed
            try:
                outcome, why = await self._one(vehicle, r, now_ms)
            except FilesMissing as exc:
                self.kept += 1
                await self._set_aside(letter, vehicle, r, await self._missing(vehicle, exc),
                                      now_ms)
                continue
            except Exception as exc:
                if self.transient(exc):
                    raise
                await self._count(letter, vehicle, r, exc, now_ms)
                continue
            if why is not None:
                dead.append((r.seq, why))
                await self._set_aside(letter, vehicle, r, why, now_ms, replayable=False)
            elif letter is not None and letter["state"] == "failing":
                await store.drop_action_letter(vehicle, r.epoch, r.seq)  # it passed after all
        return dead

    async def _count(self, letter: dict | None, vehicle: str, r: StoredReading,
                     exc: Exception, now_ms: int) -> None:
        """One more failure of a reading: ActionFailed (the batch is sent again) until its
        DEAD_AFTER_FAILURES-th identical one, which sets it aside."""
        letter = letters.failed(letter or _new(vehicle, r, now_ms), letters.describe(exc),
                                now_ms, self.dead_after)
        await self.applier.store.put_action_letter(letter)
        self.failed += 1
        if letter["state"] != "dead":
            log.warning("vehicle %s: action at seq %d failed (%d of %d before it is set "
                        "aside): %s", vehicle, r.seq, letter["failures"], self.dead_after,
                        letter["error"], exc_info=exc)
            raise ActionFailed(f"action at seq {r.seq} failed: {letter['error']}") from exc
        self.dead_lettered += 1
        log.error("vehicle %s: action at seq %d set aside as a dead letter after %d identical "
                  "failures: %s", vehicle, r.seq, letter["failures"], letter["error"])

    async def _set_aside(self, letter: dict | None, vehicle: str, r: StoredReading, why: str,
                         now_ms: int, replayable: bool = True) -> None:
        """A refusal by rule: a dead letter at once, with the reason."""
        letter = letters.refused(letter or _new(vehicle, r, now_ms), why, now_ms, replayable)
        await self.applier.store.put_action_letter(letter)
        self.dead_lettered += 1
        log.warning("vehicle %s: action at seq %d set aside as a dead letter: %s", vehicle,
                    r.seq, why)

    async def _missing(self, vehicle: str, exc: FilesMissing) -> str:
        """Why a proof names images the backend does not have: each one's own letter (refused
        as no image, or set aside), if it has one, so the letter says what went wrong."""
        known: dict[str, str] = {}
        for row in await self.applier.store.action_letters(None, vehicle):
            image = row["action"].get("image")
            if isinstance(image, dict) and image.get("id") in exc.ids:
                known.setdefault(image["id"], f"{row['state']}: {row['error']}")
        return "; ".join([str(exc), *known.values()])

    async def _refused_image(self, vehicle: str, image_id: str) -> bool:
        """Whether this image of the vehicle was refused (its id is its bytes' hash: the
        same id is the same refusal)."""
        return any(isinstance(image := row["action"].get("image"), dict)
                   and image.get("id") == image_id
                   for row in await self.applier.store.action_letters("refused", vehicle))

    async def _one(self, vehicle: str, r: StoredReading,
                   now_ms: int) -> tuple[str, str | None]:
        """One `act` reading: (what became of it — "applied" (or the applier's stored outcome,
        a conflict with its detail), "same …" when it was before, "kept" — and why an image
        part was refused, or None)."""
        if is_part(r.data):
            why = await self._part(vehicle, r, now_ms)
            if why is _NOBODY:
                return "kept", None
            return ("kept" if why else "applied"), why
        if is_detection(r.data):
            return await self._detection(vehicle, r, now_ms), None
        try:
            action = parse_action(r.data)
            # the driver of the vehicle when the action was taken (its device time), not now
            outcome = await self.applier.apply_from_vehicle(vehicle, action, now_ms,
                                                            r.time_ms)
        except (ActionRefused, KeyReused) as exc:
            self.kept += 1
            log.warning("vehicle %s: action at seq %d kept, not applied: %s", vehicle,
                        r.seq, exc)
            return "kept", None
        if outcome is None:
            self.kept += 1
            log.warning("vehicle %s: action %s kept, not applied: nobody drove the "
                        "vehicle when it was taken", vehicle, action.key)
            return "kept", None
        row, new = outcome
        if new:
            self.applied += 1
        shown = row["outcome"] + (f": {row['detail']}" if row.get("detail") else "")
        return (shown if new else f"same ({shown})"), None

    async def replay(self, vehicle: str, epoch: int, seq: int, now_ms: int) -> dict:
        """Apply a dead letter again (after the fix of what failed): the letter after it.
        `replayed` once applied — exactly once: the applier applies each key once, so a
        replay of what was applied meanwhile, or replayed before, changes nothing. Still
        failing: the letter stays dead with the new error. LookupError if there is no such
        letter; NotReplayable for an image refused by rule."""
        store = self.applier.store
        lock = self._locks.setdefault(vehicle, asyncio.Lock())
        try:
            async with lock:  # never beside a batch of the same vehicle
                letter = await store.action_letter(vehicle, epoch, seq)
                if letter is None:
                    raise LookupError(f"no dead letter {vehicle}/{epoch}/{seq}")
                if letter["state"] == "replayed":
                    return letter
                if letter["state"] == "refused":
                    raise NotReplayable(f"refused by rule, the device must send it again: "
                                        f"{letter['error']}")
                r = StoredReading(vehicle, epoch, seq, letter["taken_ms"], "act",
                                  data=letter["action"])
                try:
                    outcome, why = await self._one(vehicle, r, now_ms)
                except FilesMissing as exc:
                    outcome, why = "kept", await self._missing(vehicle, exc)
                except Exception as exc:
                    if self.transient(exc):
                        raise
                    outcome, why = "kept", letters.describe(exc)
                if outcome != "kept":
                    letter = letters.replayed(letter, outcome, now_ms)
                elif why is not None and is_part(r.data):  # its image refused by rule
                    letter = letters.refused(letter, why, now_ms, replayable=False)
                else:
                    letter = letter | {"state": "dead", "last_ms": now_ms,
                                       "error": why or "kept, not applied (see the log)"}
                await store.put_action_letter(letter)
                log.info("vehicle %s: dead letter %d/%d replayed: %s", vehicle, epoch, seq,
                         letter["state"] if why is None else why)
                return letter
        finally:
            if not lock.locked() and self._locks.get(vehicle) is lock:
                del self._locks[vehicle]

    async def sweep(self, now_ms: int) -> int:
        """Drop the parts of images whose last part came more than STALE_MS ago (they will
        never complete: the journal never drops an `act` reading); the parts dropped."""
        dropped = await self.applier.store.drop_stale_image_parts(now_ms - STALE_MS)
        if dropped:
            self.swept += dropped
            log.warning("swept %d parts of images that never completed", dropped)
        return dropped

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
            return _NOBODY
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
            if held is None and await self._refused_image(vehicle, part.image_id):
                return None  # a part of an image refused before, sent again: hold nothing
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
        except Exception as exc:  # not the image's refusal: the code's (parts kept: replay)
            raise ImageBroke(f"image {part.image_id}: {letters.describe(exc)}") from exc
        await store.put_driver_file({
            "id": part.image_id, "driver_id": driver, "vehicle_id": vehicle,
            "job_id": part.job_id, "kind": part.kind, "media_type": clean.media_type,
            "data": clean.data, "created_ms": now_ms})
        await store.drop_image_parts(vehicle, part.image_id)
        self.images += 1
        return None

    async def _detection(self, vehicle: str, r: StoredReading, now_ms: int) -> str:
        """An arrival or departure detected on the vehicle: the dispatch service's (it is
        no driver's action: no driver needed, never the applier's)."""
        dispatch = self.applier.dispatch
        if dispatch is None:
            self.kept += 1
            log.warning("vehicle %s: detection at seq %d kept: no dispatch here", vehicle,
                        r.seq)
            return "kept"
        outcome = await dispatch.vehicle_detected(vehicle, r.data, now_ms)
        if outcome.startswith("refused"):
            self.kept += 1
            log.warning("vehicle %s: detection at seq %d kept, not recorded: %s", vehicle,
                        r.seq, outcome)
            return "kept"
        if outcome == "recorded":
            self.detected += 1
            return "applied"
        return "same"


def _header(row: dict) -> tuple:
    """Part.header() of a held part's row."""
    return (row["image_id"], row["kind"], row["job_id"], row["count"], row["size"],
            row["sha256"])


def _row(vehicle: str, part: Part, now_ms: int) -> dict:
    return {"vehicle_id": vehicle, "image_id": part.image_id, "idx": part.index,
            "kind": part.kind, "job_id": part.job_id, "count": part.count, "size": part.size,
            "sha256": part.sha256, "data": part.data, "received_ms": now_ms}


def _new(vehicle: str, r: StoredReading, now_ms: int) -> dict:
    return letters.new_letter(vehicle, r.epoch, r.seq, r.time_ms, r.data or {}, now_ms)
