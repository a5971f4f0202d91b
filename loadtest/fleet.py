"""A simulated vehicle's readings, backlog and acknowledgements (sans-IO: time is an argument).

`SimVehicle` makes readings at a fixed rate (positions with every field the agent sends, and
every `CAN_EVERY`-th reading a CAN snapshot of `CAN_SIGNALS` signals, so sizes match a truck's),
numbers them in one epoch, picks each batch live-first (what was made since the last batch,
newest first, then the oldest backlog) within the session's credit, and books acknowledgements:
which sequence numbers are done and how long each waited for its ack.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict

# Readings per batch: well under the 64 KiB batch budget even for CAN snapshots (~170 bytes
# each before DEFLATE), and below the agent's own bound (geostream.limits.SEND_BATCH_READINGS).
MAX_BATCH_READINGS = 500
# One reading in this many is a CAN snapshot; the rest are positions (a 1–10 Hz GPS and a
# few CAN snapshots per second, as the agent's defaults produce).
CAN_EVERY = 4
CAN_SIGNALS = ("EngineSpeed", "VehicleSpeed", "AccelPedalPos", "EngineCoolantTemp",
               "FuelLevel", "EngineLoad", "BatteryVoltage", "Odometer")
# Latency histogram resolution and range (1 ms buckets; slower acks land in the last one).
HIST_MAX_MS = 60_000


class Histogram:
    """Counts in 1 ms buckets, mergeable across processes (percentiles of the whole run)."""

    def __init__(self, counts: dict[int, int] | None = None):
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, seconds: float) -> None:
        ms = min(HIST_MAX_MS, int(seconds * 1000))
        self.counts[ms] = self.counts.get(ms, 0) + 1

    def merge(self, other: Histogram) -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float) -> float | None:
        """The p-th percentile in ms (upper edge of its bucket), None if empty."""
        total = self.total
        if not total:
            return None
        rank = max(1, math.ceil(total * p / 100))
        seen = 0
        for ms in sorted(self.counts):
            seen += self.counts[ms]
            if seen >= rank:
                return float(ms + 1)
        return float(HIST_MAX_MS)

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.counts.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Histogram:
        return cls({int(k): v for k, v in data.items()})


class SimVehicle:
    """One vehicle's readings from `start` (seconds, the caller's clock) at `rate_hz`."""

    def __init__(self, vehicle_id: str, token: str, epoch: int, rate_hz: float, start: float,
                 wall_ms_at_start: int, seed: int = 0):
        self.vehicle_id = vehicle_id
        self.token = token
        self.epoch = epoch
        self.rate_hz = rate_hz
        self.start = start
        self.wall_ms_at_start = wall_ms_at_start
        self._rng = random.Random(seed)
        self._lat = 53.55 + self._rng.uniform(-0.2, 0.2)
        self._lon = 9.99 + self._rng.uniform(-0.3, 0.3)
        self.made = 0                 # readings made so far; sequence numbers 1..made
        self.unacked: OrderedDict[int, dict] = OrderedDict()  # q → wire reading
        self._unsent: OrderedDict[int, None] = OrderedDict()  # backlog not sent this session
        self._fresh: list[int] = []   # made since the last batch (live)
        self.sent_at: dict[int, float] = {}
        self.acked = 0
        self.latency = Histogram()
        self.live_latency = Histogram()  # readings that went out in the batch after they were made
        self._live_q: set[int] = set()
        self.making = True

    # --- readings ---------------------------------------------------------------------

    def make_due(self, now: float) -> int:
        """Make every reading due by `now`; returns how many were made."""
        if not self.making:
            return 0
        due = int((now - self.start) * self.rate_hz) + 1
        n = 0
        while self.made < due:
            self.made += 1
            q = self.made
            self.unacked[q] = self._reading(q)
            self._fresh.append(q)
            n += 1
        return n

    def _reading(self, q: int) -> dict:
        ts = self.wall_ms_at_start + int((q - 1) * 1000 / self.rate_hz)
        if q % CAN_EVERY == 0:
            r = self._rng
            sig = {"EngineSpeed": round(r.uniform(600, 2200), 1),
                   "VehicleSpeed": round(r.uniform(0, 90), 2),
                   "AccelPedalPos": round(r.uniform(0, 100), 1),
                   "EngineCoolantTemp": r.randint(70, 95), "FuelLevel": round(r.uniform(5, 100), 1),
                   "EngineLoad": r.randint(0, 100), "BatteryVoltage": round(r.uniform(24, 28), 2),
                   "Odometer": 123456 + q // 10}
            return {"q": q, "ts": ts, "k": "can", "bus": "can0", "sig": sig}
        self._lat += self._rng.uniform(-1e-4, 1e-4)
        self._lon += self._rng.uniform(-1e-4, 1e-4)
        return {"q": q, "ts": ts, "k": "pos", "lat": round(self._lat, 7),
                "lon": round(self._lon, 7), "alt": 12.5, "spd": round(self._rng.uniform(0, 90), 1),
                "crs": round(self._rng.uniform(0, 360), 1), "fix": 1, "mode": 3, "sat": 9,
                "hdop": 0.9}

    # --- sessions and batches ---------------------------------------------------------

    def new_session(self) -> None:
        """A new connection: everything unacknowledged so far is backlog, sent again oldest
        first after the live readings (the store de-duplicates what had arrived)."""
        self._unsent = OrderedDict((q, None) for q in self.unacked)
        self._fresh = []

    @property
    def has_unsent(self) -> bool:
        return bool(self._fresh or self._unsent)

    def next_batch(self, credit: int, now: float) -> list[dict]:
        """Live first (newest first), then the oldest backlog; at most `credit` readings."""
        limit = min(credit, MAX_BATCH_READINGS)
        out: list[dict] = []
        while self._fresh and len(out) < limit:
            q = self._fresh.pop()
            self._unsent.pop(q, None)
            if q in self.unacked:
                out.append(self.unacked[q])
                self._live_q.add(q)
        while self._unsent and len(out) < limit:
            q, _ = self._unsent.popitem(last=False)
            if q in self.unacked:
                out.append(self.unacked[q])
        if self._fresh:  # what did not fit waits as backlog, still before older backlog
            for q in self._fresh:
                self._unsent[q] = None
                self._unsent.move_to_end(q, last=False)
            self._fresh.clear()
        for r in out:
            self.sent_at[r["q"]] = now
        return out

    def acknowledged(self, qs, now: float) -> int:
        """Book the sequence numbers an ack covered; returns how many were new."""
        n = 0
        for q in qs:
            if self.unacked.pop(q, None) is None:
                continue
            n += 1
            sent = self.sent_at.pop(q, None)
            if sent is not None:
                self.latency.add(now - sent)
                if q in self._live_q:
                    self.live_latency.add(now - sent)
            self._live_q.discard(q)
        self.acked += n
        return n
