"""The limit on placing a point onto the road network, and the error for a point past it.

Apart from `matrix` (which re-exports both) so that what only catches the error (the planning
API, live ETAs) does not load numpy and the road graph with it at every backend start.
"""

from __future__ import annotations

import math

# A point farther than this from any drivable road is not a stop a vehicle can serve
# (in the sea, in a park, outside the extract): a clear error beats a silent 5-km walk.
MAX_SNAP_M = 250.0


class SnapError(ValueError):
    """A point cannot be placed on the road network; `index` says which one."""

    def __init__(self, index: int, lon: float, lat: float, distance_m: float):
        self.index, self.lon, self.lat, self.distance_m = index, lon, lat, distance_m
        where = ("no drivable road within the extract" if not math.isfinite(distance_m)
                 else f"nearest drivable road is {distance_m:.0f} m away")
        super().__init__(f"point {index} ({lat:.6f}, {lon:.6f}): {where} "
                         f"(limit {MAX_SNAP_M:.0f} m: in the sea, off the map or off-road?)")
