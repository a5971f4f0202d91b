"""Driver actions that came through a vehicle's journal (docs/protocol.md §4 "act") into the
one applier of driver actions (backend/driver/applier.py), and arrivals/departures the
vehicle detected into the dispatch service (revision 3), for the gateway: called with a
batch's `act` readings before the batch is stored and acknowledged.

An action the applier's rules refuse (a malformed body, a key reused for another action, images
named that were never uploaded) or
that has nobody to apply it as (no driver on the vehicle's shift now) stays as its stored
reading, logged: nothing the driver did is dropped, and the batch is acknowledged. A failure of
the store itself propagates: the batch is not acknowledged and the agent sends it again (the
applier applies each key once).
"""

from __future__ import annotations

import logging

from .dispatch.onboard import is_detection
from .driver.actions import ActionRefused, KeyReused, parse_action
from .driver.applier import ActionApplier, FilesMissing
from .store.rows import StoredReading

log = logging.getLogger(__name__)


class VehicleActions:
    def __init__(self, applier: ActionApplier):
        self.applier = applier
        self.applied = 0  # applied now (not re-sends)
        self.kept = 0  # refused or without a driver: kept as readings only
        self.detected = 0  # arrivals/departures detected on the vehicle, recorded now

    async def __call__(self, vehicle: str, readings: list[StoredReading], now_ms: int) -> None:
        for r in sorted(readings, key=lambda r: (r.epoch, r.seq)):  # the order taken
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
