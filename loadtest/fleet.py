"""A simulated vehicle's readings and acknowledgements (sans-IO: time is an argument).

`SimVehicle` makes readings at a fixed rate as the agent's sources do (`agent.readings`
positions with every field the agent sends, and every `CAN_EVERY`-th reading a CAN snapshot of
`CAN_SIGNALS` signals, so sizes match a truck's), encodes them as the agent's journal does
(`agent.wire_encode`) into its `MemoryJournal`, hands out batches in the agent's drain order,
and books acknowledgements: which sequence numbers are done and how long each waited.
Which batch goes when is not decided here: the agent's `UplinkMachine` does (loadtest/driver.py).
"""

from __future__ import annotations

import math
import random

import cbor2

from agent.journal_drain import DrainState
from agent.readings import Position, Reading, Signals
from agent.wire_encode import encode

from .journal import MemoryJournal

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
                 wall_ms_at_start: int, seed: int = 0, latency: Histogram | None = None,
                 live_latency: Histogram | None = None):
        """`latency`, `live_latency`: histograms to book into (a process's vehicles share
        theirs: one merge at the end instead of one per vehicle); else the vehicle's own."""
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
        self.journal = MemoryJournal()
        self.sent_at: dict[int, float] = {}
        self._live_q: set[int] = set()  # sent in a batch that caught up (a live batch)
        self.acked = 0
        self.latency = latency if latency is not None else Histogram()
        # readings that went out in a live batch
        self.live_latency = live_latency if live_latency is not None else Histogram()
        self.making = True

    # --- readings ---------------------------------------------------------------------

    def make_due(self, now: float) -> int:
        """Make every reading due by `now` into the journal; returns how many were made."""
        if not self.making or now < self.start:
            return 0
        due = int((now - self.start) * self.rate_hz) + 1
        n = 0
        while self.made < due:
            self.made += 1
            reading = self.reading(self.made)
            self.journal.append(encode(reading), type(reading) is Position)
            n += 1
        return n

    def next_due(self) -> float | None:
        """When the next reading is due (None while nothing is made)."""
        return self.start + self.made / self.rate_hz if self.making else None

    def reading(self, q: int) -> Reading:
        """Reading number `q` as the agent's sources make it (call in order of q)."""
        ts = self.wall_ms_at_start + int((q - 1) * 1000 / self.rate_hz)
        r = self._rng
        if q % CAN_EVERY == 0:
            return Signals(ts, "can0", {
                "EngineSpeed": round(r.uniform(600, 2200), 1),
                "VehicleSpeed": round(r.uniform(0, 90), 2),
                "AccelPedalPos": round(r.uniform(0, 100), 1),
                "EngineCoolantTemp": r.randint(70, 95), "FuelLevel": round(r.uniform(5, 100), 1),
                "EngineLoad": r.randint(0, 100), "BatteryVoltage": round(r.uniform(24, 28), 2),
                "Odometer": 123456 + q // 10})
        self._lat += r.uniform(-1e-4, 1e-4)
        self._lon += r.uniform(-1e-4, 1e-4)
        return Position(ts, round(self._lat, 7), round(self._lon, 7), alt_m=12.5,
                        speed_kmh=round(r.uniform(0, 90), 1),
                        course_deg=round(r.uniform(0, 360), 1), fix=1, mode=3, sats=9, hdop=0.9)

    def wire_reading(self, q: int) -> dict:
        """Reading number `q` as a batch carries it, with its "q" (benchmarks' readings)."""
        wire = self.reading(q).to_wire()
        wire["q"] = q
        return wire

    def pending_wire(self) -> list[dict]:
        """Every unacknowledged reading as a batch would carry it, oldest first."""
        out = []
        for q, (_, payload) in sorted(self.journal.rows.items()):
            wire = cbor2.loads(payload)
            wire["q"] = q
            out.append(wire)
        return out

    @property
    def unacked(self) -> list[int]:
        """Sequence numbers made and not acknowledged, ascending."""
        return sorted(self.journal.rows)

    # --- batches and acks ---------------------------------------------------------------

    def next_batch(self, drain: DrainState, max_readings: int, max_bytes: int,
                   now: float) -> list[dict]:
        """The journal's next batch in the agent's drain order; remembers when each went."""
        batch = self.journal.next_batch(drain, max_readings, max_bytes)
        live, sent_at = not drain.more, self.sent_at
        for r in batch:
            q = r["q"]
            sent_at[q] = now
            if live:
                self._live_q.add(q)
            else:
                self._live_q.discard(q)
        return batch

    def acknowledge(self, through: int, ranges, now: float) -> int:
        """Apply an ack to the journal and book its latencies; returns how many were new."""
        gone = self.journal.acknowledge(through, ranges)
        for q in gone:
            sent = self.sent_at.pop(q, None)
            if sent is not None:
                self.latency.add(now - sent)
                if q in self._live_q:
                    self.live_latency.add(now - sent)
            self._live_q.discard(q)
        self.acked += len(gone)
        return len(gone)
