"""Driver actions that came through a vehicle's journal (docs/protocol.md §4 "act") into the
one applier of driver actions (backend/driver/applier.py), for the gateway: called with a
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

from .driver.actions import ActionRefused, KeyReused, parse_action
from .driver.applier import ActionApplier, FilesMissing
from .store.rows import StoredReading

log = logging.getLogger(__name__)


class VehicleActions:
    def __init__(self, applier: ActionApplier):
        self.applier = applier
        self.applied = 0  # applied now (not re-sends)
        self.kept = 0  # refused or without a driver: kept as readings only

    async def __call__(self, vehicle: str, readings: list[StoredReading], now_ms: int) -> None:
        for r in sorted(readings, key=lambda r: (r.epoch, r.seq)):  # the order taken
            try:
                action = parse_action(r.data)
                outcome = await self.applier.apply_from_vehicle(vehicle, action, now_ms)
            # FilesMissing: images come over HTTP only; one named here that the backend never
            # got cannot come later through the journal, so raising would stall the vehicle
            except (ActionRefused, KeyReused, FilesMissing) as exc:
                self.kept += 1
                log.warning("vehicle %s: action at seq %d kept, not applied: %s", vehicle,
                            r.seq, exc)
                continue
            if outcome is None:
                self.kept += 1
                log.warning("vehicle %s: action %s kept, not applied: nobody drives the "
                            "vehicle now", vehicle, action.key)
            elif outcome[1]:
                self.applied += 1
